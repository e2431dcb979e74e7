//! Counters of dropped datagrams, by reason.
//!
//! Shared (`Arc`) between the port demux and every endpoint of that port, incremented with relaxed
//! atomics (no lock on the packet path); the shell publishes a [`DropCounters::snapshot`] in
//! `/metrics` and `/colibri/stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a datagram (or part of one) was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Empty datagram or first byte outside every RFC 7983 range.
    UnknownProtocol,
    /// Not STUN, and the source address belongs to no endpoint.
    UnknownAddress,
    /// STUN framing invalid or truncated.
    StunMalformed,
    /// STUN request whose USERNAME names no local ufrag on this port.
    StunUnknownUfrag,
    /// STUN MESSAGE-INTEGRITY missing or wrong (bad credentials).
    StunBadIntegrity,
    /// STUN FINGERPRINT missing or wrong.
    StunBadFingerprint,
    /// A STUN message we don't handle (indication, other method, unmatched response).
    StunUnexpected,
    /// DTLS record rejected (malformed, bad MAC, handshake failure).
    DtlsError,
    /// DTLS/SRTP from an address that passed no ICE check for this endpoint.
    UnvalidatedAddress,
    /// RTP/RTCP header truncated or malformed.
    RtpMalformed,
    /// SRTP/SRTCP arrived before DTLS produced keys.
    SrtpNotReady,
    /// SRTP/SRTCP authentication failed, or too short for the tag.
    SrtpAuth,
    /// SRTP/SRTCP whose index the replay window already accepted or has passed (RFC 3711 §3.3.2),
    /// rejected before decryption.
    SrtpReplay,
    /// SCTP packet rejected.
    SctpError,
    /// Source address refused by the port's source filter (ACL).
    SourceFiltered,
    /// SRTP for an SSRC the endpoint did not signal (or SRTCP from an unsignalled sender past
    /// the cap), dropped before decryption (`ssrc_filter.rs`).
    SsrcUnsignalled,
    /// A new SSRC past the per-endpoint cap of SRTP contexts, dropped before decryption.
    SsrcLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 17] = [
        DropReason::UnknownProtocol,
        DropReason::UnknownAddress,
        DropReason::StunMalformed,
        DropReason::StunUnknownUfrag,
        DropReason::StunBadIntegrity,
        DropReason::StunBadFingerprint,
        DropReason::StunUnexpected,
        DropReason::DtlsError,
        DropReason::UnvalidatedAddress,
        DropReason::RtpMalformed,
        DropReason::SrtpNotReady,
        DropReason::SrtpAuth,
        DropReason::SrtpReplay,
        DropReason::SctpError,
        DropReason::SourceFiltered,
        DropReason::SsrcUnsignalled,
        DropReason::SsrcLimit,
    ];

    /// Stable snake_case name, used as a metrics label value.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::UnknownProtocol => "unknown_protocol",
            DropReason::UnknownAddress => "unknown_address",
            DropReason::StunMalformed => "stun_malformed",
            DropReason::StunUnknownUfrag => "stun_unknown_ufrag",
            DropReason::StunBadIntegrity => "stun_bad_integrity",
            DropReason::StunBadFingerprint => "stun_bad_fingerprint",
            DropReason::StunUnexpected => "stun_unexpected",
            DropReason::DtlsError => "dtls_error",
            DropReason::UnvalidatedAddress => "unvalidated_address",
            DropReason::RtpMalformed => "rtp_malformed",
            DropReason::SrtpNotReady => "srtp_not_ready",
            DropReason::SrtpAuth => "srtp_auth",
            DropReason::SrtpReplay => "srtp_replay",
            DropReason::SctpError => "sctp_error",
            DropReason::SourceFiltered => "source_filtered",
            DropReason::SsrcUnsignalled => "ssrc_unsignalled",
            DropReason::SsrcLimit => "ssrc_limit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Drop counters plus a few totals for the port.
#[derive(Debug, Default)]
pub struct DropCounters {
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl DropCounters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one dropped datagram.
    pub fn count(&self, reason: DropReason) {
        if let Some(c) = self.drops.get(reason.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.drops
            .get(reason.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub fn total(&self) -> u64 {
        self.drops.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// `(reason name, count)` for every reason, in a stable order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        DropReason::ALL
            .iter()
            .map(|r| (r.name(), self.get(*r)))
            .collect()
    }
}
