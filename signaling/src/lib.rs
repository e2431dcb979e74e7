//! Jitsi wire formats shared by the bridge and the focus, and the XMPP session plumbing.
//!
//! Every stanza type converts to and from a `minidom` [`Element`](xml::Element) through
//! [`XmlElement`](xml::XmlElement); every bridge-channel message through serde JSON. Parsers never panic
//! on peer input: they return a [`ParseError`] that names the element and attribute at fault.

pub mod brewery;
pub mod bridge_channel;
pub mod colibri2;
pub mod error;
pub mod focus_iq;
pub mod health;
pub mod jingle;
pub mod json_sources;
pub mod media;
pub mod ns;
pub mod service;
pub mod source_map;
pub mod sources;
pub mod transport;
pub mod xml;
pub mod xmpp;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::ParseError;
pub use xml::XmlElement;
