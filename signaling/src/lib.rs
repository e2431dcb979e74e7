//! Jitsi wire formats shared by the bridge and the focus, and the XMPP sessions that carry them.
//!
//! Every stanza type converts to and from a `minidom` [`Element`](xml::Element) through
//! [`XmlElement`]; every bridge-channel message through serde JSON. Parsers never panic
//! on peer input: they return a [`ParseError`] that names the element and attribute at fault.
//!
//! | module | holds |
//! |---|---|
//! | [`colibri2`] | COLIBRI2 `conference-modify` / `conference-modified` and its errors (focus ↔ bridge) |
//! | [`jingle`] | the Jingle dialect Jicofo and lib-jitsi-meet speak (focus ↔ client) |
//! | [`rtp_description`] | RTP description pieces both carry: payload types, RTCP feedback, header extensions |
//! | [`ice_udp`] | the ICE-UDP transport element (ufrag, pwd, fingerprint, candidates, `sctpmap`, `web-socket`) |
//! | [`sources`] | `source` / `ssrc-group` (source-specific media attributes) |
//! | [`source_map`] | the conference source map: who sends which sources; validation; the XML contents form |
//! | [`json_sources`] | the compact JSON form of the source map (`json-message`) |
//! | [`jingle_sources`] | a Jingle stanza's sources in either form |
//! | [`focus_iq`], [`brewery`], [`health`] | the focus `conference` IQ, brewery presence stats, health / shutdown IQs |
//! | [`bridge_channel`] | the JSON messages of the data channel / colibri-ws |
//! | [`xmpp`] | client and component sessions: connect, reconnect, IQs, MUC |
//! | [`xml`], [`ns`], [`error`] | parsing helpers, namespaces, the one parse error type |
//!
//! Process plumbing (settings, logging, HTTP routes, signals) is the `service` crate; the real-Prosody
//! test harness is the `testkit` crate.

pub mod brewery;
pub mod bridge_channel;
pub mod colibri2;
pub mod error;
pub mod focus_iq;
pub mod health;
pub mod ice_udp;
pub mod jingle;
pub mod jingle_sources;
pub mod json_sources;
pub mod ns;
pub mod rtp_description;
pub mod source_map;
pub mod sources;
pub mod xml;
pub mod xmpp;

pub use error::ParseError;
pub use xml::XmlElement;
