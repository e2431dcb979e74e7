//! Counters of everything the core does and everything it drops, by reason. Plain `u64` array
//! increments: the core is single-threaded, the shell copies them into Prometheus / `/colibri/stats`.

macro_rules! counters {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $v,)* }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$v,)*];
            /// Stable snake_case name (metric label).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }
        }
    };
}

counters! {
    /// Why an input (or one of its per-receiver copies) was dropped.
    DropReason {
        /// Not parseable as RTP (typed error from the parser).
        RtpMalformed => "rtp_malformed",
        /// No registered source has this SSRC.
        RtpUnknownSsrc => "rtp_unknown_ssrc",
        /// The SSRC belongs to another endpoint.
        RtpSsrcNotOwned => "rtp_ssrc_not_owned",
        /// Padding-only packets (bandwidth probes) are terminated.
        RtpPaddingOnly => "rtp_padding_only",
        /// FEC from a sender, or RTX that cannot be unwrapped (no payload type mapping, too short).
        RtpSenderRepair => "rtp_sender_repair",
        /// A packet (or an unwrapped retransmission) the bridge already received.
        RtpDuplicate => "rtp_duplicate",
        /// Audio silence (level 127) after the first few packets of a silent stretch.
        RtpSilence => "rtp_silence",
        /// A video packet of a frame older than the projection tracks (per receiver).
        RtpFrameTooOld => "rtp_frame_too_old",
        /// Media of a force-muted endpoint.
        RtpForceMuted => "rtp_force_muted",
        /// Receiver did not negotiate the payload type (per receiver).
        RtpPayloadTypeNotNegotiated => "rtp_pt_not_negotiated",
        /// A late packet from before a point where packets were skipped (per receiver).
        RtpLateAfterSkip => "rtp_late_after_skip",
        /// A video packet whose codec descriptor (the Dependency Descriptor header extension) is
        /// malformed or refers to a structure the bridge does not have: never forwarded
        /// half-understood.
        RtpMalformedDescriptor => "rtp_malformed_descriptor",
        /// Not parseable as RTCP.
        RtcpMalformed => "rtcp_malformed",
        /// A transport-cc feedback whose chunks or deltas do not add up.
        TccFeedbackMalformed => "tcc_feedback_malformed",
        /// PLI/FIR/NACK naming an SSRC the conference does not know.
        RtcpUnknownSsrc => "rtcp_unknown_ssrc",
        /// Keyframe request suppressed by the §7.5 throttle.
        KeyframeThrottled => "keyframe_throttled",
        /// NACKed packet no longer (or never) in the retransmission cache.
        NackNotCached => "nack_not_cached",
        /// Same packet NACKed again too soon after a retransmission.
        NackRecentlyResent => "nack_recently_resent",
        /// NACKed packet of a stream segment the receiver has switched away from (it decodes
        /// from the new keyframe, the old packet is of no use).
        NackSuperseded => "nack_superseded",
        /// Retransmissions to this receiver already use their share of its bandwidth estimate.
        NackRateLimited => "nack_rate_limited",
        /// SR of an SSRC that no receiver gets (e.g. a non-primary simulcast encoding).
        SrNotProjected => "sr_not_projected",
        /// Bridge-channel text that is not JSON or not a known shape.
        ChannelMalformed => "channel_malformed",
        /// Bridge-channel message class the bridge does not handle.
        ChannelUnknownClass => "channel_unknown_class",
        /// EndpointMessage to an endpoint that is not in the conference.
        ChannelUnknownTarget => "channel_unknown_target",
        /// Message to an endpoint whose data channel is not open.
        ChannelNotOpen => "channel_not_open",
        /// `EndpointMessage` / `EndpointStats` past its sender's relay budget (`sfu/rate.rs`).
        ChannelRateLimited => "channel_rate_limited",
        /// Input for an endpoint or conference handle that no longer exists.
        UnknownEndpoint => "unknown_endpoint",
        /// A signalled SSRC already belongs to another endpoint of the conference.
        SsrcConflict => "ssrc_conflict",
    }
}

counters! {
    /// Things the core did.
    Stat {
        RtpReceived => "rtp_received",
        RtpBytesReceived => "rtp_bytes_received",
        RtpSent => "rtp_sent",
        RtpBytesSent => "rtp_bytes_sent",
        RtcpReceived => "rtcp_received",
        RtcpSent => "rtcp_sent",
        /// RTCP packets consumed by the bridge (RR, SDES, BYE, NACK, TCC, REMB, XR, APP…).
        RtcpTerminated => "rtcp_terminated",
        ReceiverReportsSent => "receiver_reports_sent",
        SenderReportsForwarded => "sender_reports_forwarded",
        PliReceived => "pli_received",
        FirReceived => "fir_received",
        PliSent => "pli_sent",
        FirSent => "fir_sent",
        NackReceived => "nack_received",
        /// NACKs the bridge sent to senders for packets missing on the way in.
        NackSent => "nack_sent",
        /// Transport-cc feedback packets sent to senders.
        TccFeedbackSent => "tcc_feedback_sent",
        RetransmissionsRtx => "retransmissions_rtx",
        RetransmissionsPlain => "retransmissions_plain",
        /// Retransmissions from senders (RTX) unwrapped into their media stream.
        RtxUnwrapped => "rtx_unwrapped",
        /// Allocation runs (one per receiver).
        Allocations => "allocations",
        /// Encoding switches started by the allocation (target encoding changed).
        LayerSwitches => "layer_switches",
        SenderConstraintsSent => "sender_constraints_sent",
        /// Probing packets (RTX or padding) sent to raise a receiver's bandwidth estimate.
        ProbePackets => "probe_packets",
        ProbeBytes => "probe_bytes",
        ChannelMessagesReceived => "channel_messages_received",
        ChannelMessagesSent => "channel_messages_sent",
        DominantSpeakerChanges => "dominant_speaker_changes",
        EndpointsCreated => "endpoints_created",
        EndpointsExpired => "endpoints_expired",
        ConferencesCreated => "conferences_created",
        ConferencesExpired => "conferences_expired",
        /// Conferences removed because handling one of their inputs panicked.
        ConferencesFaulted => "conferences_faulted",
        /// Report blocks from receivers about the streams the bridge sends them, and the sum of
        /// their fraction-lost values (1/256 units): their ratio is the outgoing loss.
        ReportBlocksReceived => "report_blocks_received",
        ReportedLossQ8 => "reported_loss_q8",
        /// Packets the bridge expected and lost from senders, counted per receiver-report interval
        /// (RFC 3550 A.3): their ratio is the incoming loss.
        PacketsExpected => "packets_expected",
        PacketsLost => "packets_lost",
        /// Conferences that ended without any endpoint connecting (JVB `total_failed_conferences`).
        ConferencesFailed => "conferences_failed",
        /// Conferences that ended with some endpoints connected and some failing to
        /// (JVB `total_partially_failed_conferences`).
        ConferencesPartiallyFailed => "conferences_partially_failed",
    }
}

/// The counters of one [`Sfu`](super::Sfu).
#[derive(Debug, Clone)]
pub struct Counters {
    drops: [u64; DropReason::ALL.len()],
    stats: [u64; Stat::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::ALL.len()],
            stats: [0; Stat::ALL.len()],
        }
    }
}

impl Counters {
    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.drops[r as usize] += 1;
    }
    #[inline]
    pub fn add(&mut self, s: Stat, n: u64) {
        self.stats[s as usize] += n;
    }
    #[inline]
    pub fn inc(&mut self, s: Stat) {
        self.add(s, 1);
    }
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
    pub fn get(&self, s: Stat) -> u64 {
        self.stats[s as usize]
    }
    /// Sum of all drops.
    pub fn total_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }
    pub fn drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.drops[*r as usize]))
    }
    pub fn stats(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        Stat::ALL.iter().map(|s| (*s, self.stats[*s as usize]))
    }
}
