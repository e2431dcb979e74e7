//! Which SSRCs of an endpoint may reach SRTP decryption.
//!
//! `rtc-srtp` creates a replay context for every SSRC it is handed *before* it checks the
//! authentication tag, and never frees it: without a check first, packets with random SSRCs and
//! bad tags would grow an endpoint's memory by a few hundred bytes each. So the transport asks
//! this filter before `decrypt_*`, with no keys needed:
//!
//! - **RTP** only for SSRCs the endpoint signalled (its COLIBRI2 sources, RTX and FEC SSRCs of its
//!   groups included: the sfu's uplink table, `colibri.rs` keeps it in sync). The sfu drops any
//!   other SSRC after decryption anyway (as JVB's `PacketHandler` does).
//! - **RTCP** carries the *sender's own* SSRC: a participant that sends nothing still reports
//!   (receiver reports, transport-cc, NACK, PLI) with an SSRC it never signalled — Chromium uses 1
//!   (video) and 0xFA17FA17 (audio) then, other clients a random one. JVB accepts RTCP from any
//!   sender SSRC; we accept the signalled ones, those two, and the first
//!   [`MAX_UNSIGNALLED_RTCP_SSRCS`] others.
//! - At most [`MAX_SSRC_STATES`] distinct SSRCs are ever handed to the decryption context of one
//!   endpoint (each is a context entry for the endpoint's lifetime); past that, new SSRCs are
//!   dropped too ([`FilterDrop::Limit`]).

/// Distinct SSRCs one endpoint's SRTP context may hold. The focus allows 20 sources and 20 groups
/// per participant (`MAX_SSRCS_PER_USER`), i.e. at most ≈ 60 SSRCs with RTX/FEC at once; this
/// leaves room for source changes during a long call.
pub const MAX_SSRC_STATES: usize = 128;

/// RTCP sender SSRCs accepted without being signalled, besides Chromium's two defaults.
pub const MAX_UNSIGNALLED_RTCP_SSRCS: usize = 8;

/// Chromium's sender SSRC in RTCP of receive-only streams (video, audio).
const DEFAULT_RTCP_SSRCS: [u32; 2] = [1, 0xFA17_FA17];

/// Why the filter refused an SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDrop {
    /// Not signalled by the endpoint (and, for RTCP, no free slot for an unsignalled sender).
    Unsignalled,
    /// The endpoint's context already holds [`MAX_SSRC_STATES`] SSRCs.
    Limit,
}

/// One endpoint's SSRC filter. Sets are small sorted vectors (binary search per packet).
#[derive(Debug, Clone, Default)]
pub struct SsrcFilter {
    /// What the endpoint signalled (replaced on every source update).
    signalled: Vec<u32>,
    /// Every SSRC handed to the decryption context so far (the context's entries).
    admitted: Vec<u32>,
    /// How many of `admitted` came in as unsignalled RTCP senders.
    unsignalled_rtcp: usize,
}

impl SsrcFilter {
    /// Replaces the signalled set (duplicates are fine).
    pub fn set_signalled(&mut self, ssrcs: impl IntoIterator<Item = u32>) {
        self.signalled.clear();
        self.signalled.extend(ssrcs);
        self.signalled.sort_unstable();
        self.signalled.dedup();
    }

    pub fn signalled(&self) -> &[u32] {
        &self.signalled
    }

    /// How many SSRCs the decryption context holds because of this filter's admissions.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
    }

    /// May a packet with `ssrc` (RTP SSRC, or RTCP sender SSRC) be decrypted? Admits it (it
    /// will be a context entry) when yes.
    pub fn check(&mut self, ssrc: u32, rtcp: bool) -> Result<(), FilterDrop> {
        let signalled = self.signalled.binary_search(&ssrc).is_ok();
        let pos = self.admitted.binary_search(&ssrc);
        if pos.is_ok() {
            // Already in the context: RTP still needs the SSRC signalled now (a removed source
            // stops), RTCP from a known sender stays accepted.
            return if signalled || rtcp {
                Ok(())
            } else {
                Err(FilterDrop::Unsignalled)
            };
        }
        let default_rtcp = rtcp && DEFAULT_RTCP_SSRCS.contains(&ssrc);
        let extra_rtcp = rtcp && !signalled && !default_rtcp;
        if !(signalled
            || default_rtcp
            || (extra_rtcp && self.unsignalled_rtcp < MAX_UNSIGNALLED_RTCP_SSRCS))
        {
            return Err(FilterDrop::Unsignalled);
        }
        if self.admitted.len() >= MAX_SSRC_STATES {
            return Err(FilterDrop::Limit);
        }
        if let Err(at) = pos {
            self.admitted.insert(at, ssrc);
        }
        if extra_rtcp {
            self.unsignalled_rtcp += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_only_for_signalled_ssrcs() {
        let mut f = SsrcFilter::default();
        assert_eq!(f.check(11, false), Err(FilterDrop::Unsignalled));
        f.set_signalled([11, 12, 11]);
        assert_eq!(f.check(11, false), Ok(()));
        assert_eq!(f.check(12, false), Ok(()));
        assert_eq!(f.check(13, false), Err(FilterDrop::Unsignalled));
        assert_eq!(f.admitted(), 2);
        // Source removed: its RTP stops, its RTCP (already known) continues.
        f.set_signalled([12]);
        assert_eq!(f.check(11, false), Err(FilterDrop::Unsignalled));
        assert_eq!(f.check(11, true), Ok(()));
    }

    #[test]
    fn rtcp_from_unsignalled_senders_is_capped() {
        let mut f = SsrcFilter::default();
        assert_eq!(f.check(1, true), Ok(()));
        assert_eq!(f.check(0xFA17_FA17, true), Ok(()));
        for s in 0..MAX_UNSIGNALLED_RTCP_SSRCS as u32 {
            assert_eq!(f.check(1000 + s, true), Ok(()));
        }
        assert_eq!(f.check(5000, true), Err(FilterDrop::Unsignalled));
        // A known one keeps passing; a signalled one is never refused for the RTCP cap.
        assert_eq!(f.check(1000, true), Ok(()));
        f.set_signalled([7]);
        assert_eq!(f.check(7, true), Ok(()));
        assert_eq!(f.admitted(), 2 + MAX_UNSIGNALLED_RTCP_SSRCS + 1);
    }

    #[test]
    fn total_context_entries_are_capped() {
        let mut f = SsrcFilter::default();
        f.set_signalled(0..(MAX_SSRC_STATES as u32 + 10));
        for s in 0..MAX_SSRC_STATES as u32 {
            assert_eq!(f.check(s, false), Ok(()));
        }
        assert_eq!(
            f.check(MAX_SSRC_STATES as u32, false),
            Err(FilterDrop::Limit)
        );
        assert_eq!(f.admitted(), MAX_SSRC_STATES);
    }
}
