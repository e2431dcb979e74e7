//! XML namespaces of the stanzas Jitsi components exchange.

pub const JABBER_CLIENT: &str = "jabber:client";
pub const JINGLE: &str = "urn:xmpp:jingle:1";
pub const JINGLE_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
pub const JINGLE_RTCP_FB: &str = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0";
pub const JINGLE_RTP_HDREXT: &str = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0";
/// Source-specific media attributes (`source`, `ssrc-group`).
pub const JINGLE_SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";
pub const JINGLE_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
pub const JINGLE_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
pub const JINGLE_DTLS_SCTP: &str = "urn:xmpp:jingle:transports:dtls-sctp:1";
pub const JINGLE_GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
pub const JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";
/// The focus conference IQ, `bridge-session`, `conference-properties`.
pub const FOCUS: &str = "http://jitsi.org/protocol/focus";
/// `ssrc-info`, `json-message`, `versions` and other Jitsi Meet extensions.
pub const JITMEET: &str = "http://jitsi.org/jitmeet";
pub const JITMEET_START_MUTED: &str = "http://jitsi.org/jitmeet/start-muted";
/// Brewery `stats`, `web-socket`, graceful/force shutdown IQs.
pub const COLIBRI: &str = "http://jitsi.org/protocol/colibri";
pub const COLIBRI2: &str = "jitsi:colibri2";
pub const HEALTHCHECK: &str = "http://jitsi.org/protocol/healthcheck";
pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const DATA_FORMS: &str = "jabber:x:data";
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
