//! XMPP session plumbing over tokio-xmpp: the bridge and the focus talk to Prosody through this.
//!
//! A session is one long-lived task that owns the XML stream and reconnects it forever (exponential
//! backoff). The owner gets a cloneable [`XmppHandle`] to act on the session from any task, and an
//! [`XmppEvents`] receiver for everything that arrives (IQ requests it must answer, presences, messages)
//! and for connection state changes.
//!
//! * [`connect_client`] logs in as a user (`jvb@auth.<domain>`, `focus@auth.<domain>`): plaintext on
//!   loopback, STARTTLS otherwise (certificate checks can be disabled, as docker-jitsi-meet does for its
//!   internal connection); SASL SCRAM or PLAIN; resource binding.
//! * [`connect_component`] logs in as an XEP-0114 external component (`focus.<domain>`).
//!
//! IQ requests are correlated by id and time out with a typed [`IqError`]; a request made while the
//! session is offline fails at once. MUC rooms joined through the handle are re-joined after every
//! reconnect with the latest presence payload set for them.
//!
//! Both kinds of session present stanzas in the `jabber:client` namespace: a component stream's
//! `jabber:component:accept` stanzas are translated on the way in and out, so the owner's code (and
//! `xmpp_parsers` types) never see the difference.
//!
//! # The bridge
//!
//! ```no_run
//! # async fn bridge() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use signaling::xmpp::{self, ClientConfig, Event, MucJoin, BareJid};
//! use signaling::{XmlElement, brewery::Stats, health::HealthCheck, ns};
//!
//! // docker: XMPP_SERVER=xmpp.meet.jitsi, certificate checks off for the internal connection.
//! let config = ClientConfig::parse("jvb@auth.meet.jitsi", "secret", "xmpp.meet.jitsi")?
//!     .disable_certificate_verification();
//! let brewery = BareJid::new("jvbbrewery@internal-muc.meet.jitsi")?;
//! let (xmpp, mut events) = xmpp::connect_client(config);
//! while let Some(event) = events.recv().await {
//!     match event {
//!         // First connection: join the brewery with our stats. Re-joins after reconnects are
//!         // automatic (Event::MucRejoined), with the latest stats.
//!         Event::Online { reconnected: false, .. } => {
//!             let join = MucJoin::new(brewery.clone(), "jvb-1").with_extra(vec![Stats::new().to_element()]);
//!             xmpp.join_muc(join).await?;
//!             // …and a task that calls xmpp.set_muc_presence(&brewery, vec![stats]) every 5 s.
//!         }
//!         Event::IqRequest(iq) if iq.is("healthcheck", ns::HEALTHCHECK) => iq.reply_result(None),
//!         Event::IqRequest(iq) if iq.payload.ns() == ns::COLIBRI2 => {
//!             // Parse, apply, then iq.reply_result(Some(conference_modified)) or
//!             // iq.reply_error_element(Colibri2ErrorResponse::….to_element()).
//! #           drop(iq);
//!         }
//!         Event::IqRequest(iq) => drop(iq), // answered service-unavailable by the drop guard
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # The focus
//!
//! Two sessions: the client `focus@auth.<domain>` (conference rooms, brewery, IQs to bridges and
//! participants) and, with a stock Prosody, the component `focus.<domain>` that receives the clients'
//! conference IQs (production Prosody's `mod_client_proxy` delivers those to the client session
//! instead: handle `Event::IqRequest` on both).
//!
//! ```no_run
//! # async fn focus() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use signaling::xmpp::{self, ClientConfig, ComponentConfig, IqError, MucJoin, BareJid, Jid,
//!     MUC_ROOMCONFIG_WHOIS, DEFAULT_IQ_TIMEOUT};
//! use signaling::{XmlElement, health::HealthCheck};
//!
//! let (client, client_events) =
//!     xmpp::connect_client(ClientConfig::parse("focus@auth.meet.example", "pw", "127.0.0.1:5222")?);
//! let (component, component_events) =
//!     xmpp::connect_component(ComponentConfig::parse("focus.meet.example", "secret", "127.0.0.1:5347")?);
//! client.wait_online(Duration::from_secs(30)).await;
//!
//! let room = BareJid::new("myroom@conference.meet.example")?;
//! client.join_muc(MucJoin::new(room.clone(), "focus")).await?;
//! client.configure_room(&room, &[(MUC_ROOMCONFIG_WHOIS, &["anyone"])], DEFAULT_IQ_TIMEOUT).await?;
//!
//! let bridge = Jid::new("jvbbrewery@internal.auth.meet.example/jvb-1")?;
//! match client.iq_get(bridge, HealthCheck.to_element(), DEFAULT_IQ_TIMEOUT).await {
//!     Ok(_) => {}                                   // healthy
//!     Err(IqError::Timeout { .. }) => {}            // no answer in 15 s
//!     Err(IqError::ErrorReply(reply)) => { let _ = reply.stanza; } // e.g. HealthCheckOutcome::from_response
//!     Err(IqError::Disconnected | IqError::Closed | IqError::Invalid(_)) => {}
//! }
//! # drop((client_events, component, component_events)); Ok(()) }
//! ```

mod backoff;
mod config;
mod connect;
mod iq;
mod muc;
mod session;
mod stanza;

pub use backoff::Backoff;
pub use config::{ClientConfig, ComponentConfig, ConfigError, Keepalive, Security, ServerAddr};
pub use connect::ConnectError;
pub use iq::{DEFAULT_IQ_TIMEOUT, ErrorReply, IncomingIq, IqError, IqKind, IqResult};
pub use muc::{MUC_ROOMCONFIG_FORM_TYPE, MUC_ROOMCONFIG_WHOIS, MucError, MucJoin, MucJoined};
pub use session::{
    ConnState, Event, SendError, XmppEvents, XmppHandle, connect_client, connect_component,
};

/// Re-exported so that owners build and match stanzas with the same versions this module uses.
pub use xmpp_parsers::{
    self as parsers,
    iq::Iq,
    jid::{self, BareJid, FullJid, Jid},
    message::Message,
    presence::Presence,
    stanza::Stanza,
    stanza_error::{DefinedCondition, ErrorType},
};
