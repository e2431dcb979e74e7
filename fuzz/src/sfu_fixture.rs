//! A forwarding core with one conference of two connected endpoints, `a` and `b`, negotiated like a
//! 2021 Chrome client: Opus (PT 111, audio level id 1, transport-cc id 5) and VP8 (PT 100, RTX 96)
//! with three simulcast encodings and their RTX. The sink checks every output as it is emitted.

use std::time::{Duration, Instant};

use bridge::sfu::rtcp::Compound;
use bridge::sfu::rtp::RtpPacket;
use bridge::sfu::{
    ConferenceHandle, EndpointHandle, EndpointParams, MediaKind, MediaSourceDesc, Output, Sfu,
    SfuConfig, Sink, TransportEvent,
};
use signaling::bridge_channel::BridgeChannelMessage;
use signaling::rtp_description::{PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup};

pub const OPUS: u8 = 111;
pub const VP8: u8 = 100;
pub const RTX: u8 = 96;
pub const AUDIO_LEVEL_ID: u8 = 1;
pub const TCC_ID: u8 = 5;
/// SSRC bases: endpoint `a` uses 1000 + offsets, `b` 2000 + offsets.
pub const BASE_A: u32 = 1000;
pub const BASE_B: u32 = 2000;

/// The SSRCs of an endpoint with base `b`: audio, three simulcast encodings, their RTX.
pub fn ssrcs(b: u32) -> [u32; 7] {
    [b + 1, b + 10, b + 11, b + 12, b + 20, b + 21, b + 22]
}

pub fn audio_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(OPUS, "opus", 48000, Some(2)).with_rtcp_fb("transport-cc", None),
        ],
        header_extensions: vec![
            RtpHdrExt::new(AUDIO_LEVEL_ID, hdrext::AUDIO_LEVEL),
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
        ],
        extmap_allow_mixed: false,
    }
}

pub fn video_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(VP8, "VP8", 90000, None)
                .with_rtcp_fb("nack", None)
                .with_rtcp_fb("nack", Some("pli"))
                .with_rtcp_fb("ccm", Some("fir"))
                .with_rtcp_fb("goog-remb", None)
                .with_rtcp_fb("transport-cc", None),
            PayloadType::new(RTX, "rtx", 90000, None).with_parameter("apt", "100"),
        ],
        header_extensions: vec![RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC)],
        extmap_allow_mixed: true,
    }
}

/// The source set of endpoint `id` with SSRC base `b`.
pub fn sources(id: &str, b: u32) -> Vec<MediaSourceDesc> {
    let s = ssrcs(b);
    let mut video: Vec<Source> = s[1..]
        .iter()
        .map(|x| Source::named(*x, &format!("{id}-v0")))
        .collect();
    video[0].owner = Some(id.into());
    vec![
        MediaSourceDesc {
            kind: MediaKind::Audio,
            name: format!("{id}-a0"),
            sources: vec![Source::named(s[0], &format!("{id}-a0"))],
            groups: vec![],
        },
        MediaSourceDesc {
            kind: MediaKind::Video,
            name: format!("{id}-v0"),
            sources: video,
            groups: vec![
                SsrcGroup::new(Semantics::Sim, s[1..4].to_vec()),
                SsrcGroup::new(Semantics::Fid, vec![s[1], s[4]]),
                SsrcGroup::new(Semantics::Fid, vec![s[2], s[5]]),
                SsrcGroup::new(Semantics::Fid, vec![s[3], s[6]]),
            ],
        },
    ]
}

/// Counts outputs and panics on one that breaks the core's contract: addressed to an endpoint that
/// is not in the conference, or bytes that are not a well-formed packet / message.
#[derive(Debug, Default)]
pub struct CheckingSink {
    pub known: Vec<EndpointHandle>,
    pub rtp: u64,
    pub rtcp: u64,
    pub text: u64,
    pub events: u64,
    pub expired: Vec<EndpointHandle>,
}

impl Sink for CheckingSink {
    fn emit(&mut self, out: Output<'_>) {
        match out {
            Output::Rtp { to, packet } => {
                assert!(self.known.contains(&to), "RTP to unknown {to:?}");
                if let Err(e) = RtpPacket::parse(packet) {
                    panic!("the core emitted malformed RTP ({e}): {packet:02x?}");
                }
                self.rtp += 1;
            }
            Output::Rtcp { to, packet } => {
                assert!(self.known.contains(&to), "RTCP to unknown {to:?}");
                if let Err(e) = Compound::parse(packet) {
                    panic!("the core emitted malformed RTCP ({e}): {packet:02x?}");
                }
                self.rtcp += 1;
            }
            Output::Text { to, text } => {
                assert!(self.known.contains(&to), "message to unknown {to:?}");
                if let Err(e) = BridgeChannelMessage::parse(text) {
                    panic!("the core emitted a message we cannot parse ({e}): {text}");
                }
                self.text += 1;
            }
            Output::Event(e) => {
                if let bridge::sfu::Event::EndpointExpired { endpoint, .. } = e {
                    assert!(
                        self.known.contains(&endpoint),
                        "unknown endpoint expired: {endpoint:?}"
                    );
                    self.expired.push(endpoint);
                }
                self.events += 1;
            }
        }
    }
}

/// The core, its conference, the two endpoints and a virtual clock.
pub struct TwoParty {
    pub sfu: Sfu,
    pub conf: ConferenceHandle,
    pub a: EndpointHandle,
    pub b: EndpointHandle,
    pub start: Instant,
    pub now: Instant,
    pub sink: CheckingSink,
}

impl TwoParty {
    pub fn new() -> Self {
        let now = Instant::now();
        let mut sfu = Sfu::new(SfuConfig::default());
        let conf = sfu
            .create_conference(now, "fuzz-meeting", Some("room@muc.example"))
            .expect("conference");
        let mut sink = CheckingSink::default();
        let join = |sfu: &mut Sfu, sink: &mut CheckingSink, id: &str, base: u32| {
            let p = EndpointParams {
                id: id.into(),
                stats_id: Some(format!("{id}-stats")),
                audio: audio_params(),
                video: video_params(),
                sources: sources(id, base),
                ..Default::default()
            };
            let h = sfu.create_endpoint(now, conf, p, sink).expect("endpoint");
            sink.known.push(h);
            sfu.handle_transport_event(now, h, TransportEvent::Connected, sink);
            sfu.handle_transport_event(now, h, TransportEvent::DataChannelOpen, sink);
            h
        };
        let a = join(&mut sfu, &mut sink, "aaaa1111", BASE_A);
        let b = join(&mut sfu, &mut sink, "bbbb2222", BASE_B);
        TwoParty {
            sfu,
            conf,
            a,
            b,
            start: now,
            now,
            sink,
        }
    }

    /// Moves the clock forward by `d` (at most one minute of virtual time in total per step),
    /// running every timer that falls due on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d.min(Duration::from_secs(60));
        // A timer that stays due after it ran would spin the shell's loop: allow a few runs at
        // the same instant (several things due at once), not an endless series.
        let mut same_instant = 0;
        while let Some(t) = self.sfu.poll_timeout() {
            if t > end {
                break;
            }
            if t <= self.now {
                same_instant += 1;
                assert!(
                    same_instant < 100,
                    "handle_timeout does not re-arm its timer"
                );
            } else {
                same_instant = 0;
                self.now = t;
            }
            self.sfu.handle_timeout(self.now, &mut self.sink);
        }
        self.now = end;
    }
}

impl Default for TwoParty {
    fn default() -> Self {
        Self::new()
    }
}
