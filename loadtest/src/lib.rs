//! Browserless Jitsi participants that speak the real client protocol, and load scenarios built on
//! them.
//!
//! A participant does what lib-jitsi-meet does toward Prosody, the focus and the bridge (the 2021
//! client, or the current one: [`dialect`]): anonymous XMPP login, the conference request to
//! `focus.<domain>`, the MUC join with an 8-hex-character nickname, `session-accept` for the
//! focus's `session-initiate` (its own ICE-UDP transport, DTLS `setup=active`, audio `<ep>-a0` and
//! video `<ep>-v0` with three simulcast SSRCs), then the media plane as a client — the bridge's own
//! transport (`bridge::transport::EndpointTransport`) in the client role: ICE (controlled, full),
//! DTLS client, SRTP, SCTP + DCEP for the bridge channel — synthetic Opus-sized audio with audio
//! levels, and VP8 simulcast with real payload descriptors or (current client) AV1 SVC `L3T3_KEY`
//! with a real Dependency Descriptor ([`av1`]), receive statistics, receiver reports and
//! transport-cc feedback.
//!
//! Layout (sans-IO cores, thin async shells, as in the bridge):
//! - the media transport is the bridge's (`bridge::transport`, `Role::Client`); nothing of it is
//!   copied here;
//! - [`rtp`], [`vp8`], [`av1`], [`sender`], [`receiver`]: synthetic media out, statistics and
//!   feedback in; [`media`] puts them together with the bridge channel (sans-IO);
//! - [`session`]: the Jingle/XMPP side of a participant (conference request, presence, disco answer,
//!   session-accept from a session-initiate, remote source bookkeeping), pure functions;
//! - [`participant`]: the async shell running one participant (XMPP session + UDP socket + timers);
//! - [`scenario`], [`deployment`], [`procstat`], [`report`]: conferences × participants with join
//!   pacing, the local deployment (Prosody + bridge + focus), server-side sampling, the report;
//! - [`janus`]: the same participants through Janus's VideoRoom instead (`loadtest --sfu janus`,
//!   a local Janus on loopback), for side-by-side runs (`loadtest --compare`).

pub mod av1;
pub mod deployment;
pub mod dialect;
pub mod janus;
pub mod media;
pub mod netns;
pub mod participant;
pub mod procstat;
pub mod receiver;
pub mod report;
pub mod rtp;
pub mod scenario;
pub mod sender;
pub mod session;
pub mod vp8;
