//! Which side of the connection an endpoint transport plays.

/// The transport's role: its DTLS side (RFC 5763 `setup`), hence its SCTP side. (The ICE role is
/// separate, `IceConfig::role`: the bridge offers, so it controls when it is a full agent, RFC
/// 8445 §6.1.1; `TransportConfig::client()` sets both for a participant.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// The bridge's side: DTLS server (it signals `setup=actpass`, the peer answers `active`),
    /// SCTP accepts the peer's association and answers its DATA_CHANNEL_OPEN.
    #[default]
    Server,
    /// A participant's side (what a browser is toward JVB): DTLS client (`setup=active`, the
    /// ClientHello goes out once ICE has selected a pair), SCTP initiates the association and
    /// opens the bridge channel.
    Client,
}
