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
