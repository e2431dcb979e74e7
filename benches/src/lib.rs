//! Criterion benchmarks of the bridge's packet path (`benches/benches/*.rs`) and the fixtures they
//! share: a conference with one sender and N receivers built through the same command API COLIBRI2
//! uses, and realistic RTP/RTCP packets. SRTP stages can reuse [`Fixture`] and wrap its outputs.

use std::time::{Duration, Instant};

pub mod port;
pub mod svc;

use bridge::sfu::vp8;
use bridge::sfu::{
    EndpointHandle, EndpointParams, MediaKind, MediaSourceDesc, Output, Sfu, SfuConfig,
    TransportEvent,
};
use signaling::rtp_description::{PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup};

pub const OPUS: u8 = 111;
pub const VP8: u8 = 100;
pub const RTX: u8 = 96;
pub const AUDIO_LEVEL_ID: u8 = 1;
pub const ABS_SEND_TIME_ID: u8 = 3;
pub const TCC_ID: u8 = 5;

/// The payload types and header extensions Jicofo offers (trimmed to what matters here).
pub fn audio_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(OPUS, "opus", 48000, Some(2)).with_rtcp_fb("transport-cc", None),
        ],
        header_extensions: vec![
            RtpHdrExt::new(AUDIO_LEVEL_ID, hdrext::AUDIO_LEVEL),
            RtpHdrExt::new(ABS_SEND_TIME_ID, hdrext::ABS_SEND_TIME),
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
        ],
        extmap_allow_mixed: true,
    }
}

pub fn video_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(VP8, "VP8", 90000, None)
                .with_rtcp_fb("nack", None)
                .with_rtcp_fb("nack", Some("pli"))
                .with_rtcp_fb("ccm", Some("fir"))
                .with_rtcp_fb("transport-cc", None),
            PayloadType::new(RTX, "rtx", 90000, None).with_parameter("apt", "100"),
        ],
        header_extensions: vec![
            RtpHdrExt::new(ABS_SEND_TIME_ID, hdrext::ABS_SEND_TIME),
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
        ],
        extmap_allow_mixed: true,
    }
}

/// SSRCs of endpoint `i`: audio, three simulcast encodings, their RTX.
pub fn ssrcs(i: u32) -> (u32, [u32; 3], [u32; 3]) {
    let b = 10_000 * (i + 1);
    (b + 1, [b + 10, b + 11, b + 12], [b + 20, b + 21, b + 22])
}

pub fn sources(id: &str, i: u32) -> Vec<MediaSourceDesc> {
    let (a, sim, rtx) = ssrcs(i);
    vec![
        MediaSourceDesc {
            kind: MediaKind::Audio,
            name: format!("{id}-a0"),
            sources: vec![Source::named(a, &format!("{id}-a0"))],
            groups: vec![],
        },
        MediaSourceDesc {
            kind: MediaKind::Video,
            name: format!("{id}-v0"),
            sources: sim.iter().chain(&rtx).map(|s| Source::new(*s)).collect(),
            groups: vec![
                SsrcGroup::new(Semantics::Sim, sim.to_vec()),
                SsrcGroup::new(Semantics::Fid, vec![sim[0], rtx[0]]),
                SsrcGroup::new(Semantics::Fid, vec![sim[1], rtx[1]]),
                SsrcGroup::new(Semantics::Fid, vec![sim[2], rtx[2]]),
            ],
        },
    ]
}

/// An RTP packet as Chrome sends it: one-byte extensions (audio level for audio, abs-send-time and
/// transport-cc for both), then `payload_len` bytes of payload.
pub fn rtp_packet(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    audio: bool,
    payload_len: usize,
) -> Vec<u8> {
    let mut v = vec![0x90, pt];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    let mut ext = Vec::new();
    if audio {
        ext.extend_from_slice(&[AUDIO_LEVEL_ID << 4, 0x80 | 35]);
    }
    ext.extend_from_slice(&[(ABS_SEND_TIME_ID << 4) | 2, 1, 2, 3]);
    ext.extend_from_slice(&[(TCC_ID << 4) | 1, 0, 7]);
    while ext.len() % 4 != 0 {
        ext.push(0);
    }
    v.extend_from_slice(&0xBEDEu16.to_be_bytes());
    v.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
    v.extend_from_slice(&ext);
    let start = v.len();
    v.extend((0..payload_len).map(|i| i as u8));
    if !audio && pt == VP8 && payload_len >= VP8_HEADER_LEN {
        // A VP8 payload as Chrome sends it: descriptor with 15-bit PictureID, TL0PICIDX and TID,
        // and the keyframe header (see `set_seq_ts` for the frame structure).
        let mut d = Vec::new();
        vp8::Descriptor {
            start_of_partition: true,
            partition_id: 0,
            non_reference: false,
            picture_id: Some((0, true)),
            tl0picidx: Some(0),
            tid: Some((0, false)),
            key_idx: None,
        }
        .write(&mut d);
        vp8::write_frame_header(&mut d, true, 1280, 720);
        v[start..start + d.len()].copy_from_slice(&d);
        set_seq_ts(&mut v, seq, ts);
    }
    v
}

/// VP8 descriptor + keyframe header length in [`rtp_packet`]'s video packets.
pub const VP8_HEADER_LEN: usize = 16;
/// Packets per VP8 frame in [`rtp_packet`]'s video stream. Two, so that the 15-bit PictureID
/// (sequence number / 2) wraps exactly when the sequence number does: benches run millions of
/// packets, and a PictureID jumping back at the wrap would have the bridge drop every later frame
/// as stale (until a keyframe resyncs it), so they would measure the drop path.
pub const PACKETS_PER_FRAME: u16 = 2;
/// Every this many frames is a keyframe (about 2 s at 30 fps): the forwarding path's cost is
/// that of delta frames, as in a real stream.
pub const KEYFRAME_INTERVAL: u16 = 64;

/// Overwrites the sequence number and timestamp of a packet built by [`rtp_packet`]. For VP8
/// packets it also sets the frame structure from the sequence number: [`PACKETS_PER_FRAME`]
/// packets per frame (PictureID = TL0PICIDX = seq / 2, start bit on the first, marker on the
/// last); frames whose PictureID is a multiple of [`KEYFRAME_INTERVAL`] are keyframes, the others
/// delta frames (a receiver's stream starts at the first keyframe it gets).
#[inline]
pub fn set_seq_ts(p: &mut [u8], seq: u16, ts: u32) {
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    if p[1] & 0x7f != VP8 || p.len() < 16 + VP8_HEADER_LEN {
        return;
    }
    let ext_words = usize::from(u16::from_be_bytes([p[14], p[15]]));
    let d = 16 + 4 * ext_words;
    if p.len() < d + VP8_HEADER_LEN {
        return;
    }
    let pic = (seq / PACKETS_PER_FRAME) & 0x7fff;
    let first = seq.is_multiple_of(PACKETS_PER_FRAME);
    let last = seq % PACKETS_PER_FRAME == PACKETS_PER_FRAME - 1;
    p[1] = (p[1] & 0x7f) | if last { 0x80 } else { 0 };
    p[d] = 0x80 | if first { 0x10 } else { 0 };
    p[d + 2] = 0x80 | (pic >> 8) as u8;
    p[d + 3] = pic as u8;
    p[d + 4] = pic as u8;
    // The VP8 frame tag after the 6-byte descriptor: bit 0 set = not a keyframe.
    let key = pic.is_multiple_of(KEYFRAME_INTERVAL);
    p[d + 6] = (p[d + 6] & !1) | u8::from(!key);
}

/// One sender (endpoint 0) and `receivers` receivers, all connected with open channels.
pub struct Fixture {
    pub sfu: Sfu,
    pub now: Instant,
    pub sender: EndpointHandle,
    pub receivers: Vec<EndpointHandle>,
}

impl Fixture {
    pub fn new(receivers: usize) -> Self {
        Self::with_config(receivers, SfuConfig::default())
    }

    pub fn with_config(receivers: usize, cfg: SfuConfig) -> Self {
        Self::with_media(receivers, cfg, video_params(), sources)
    }

    /// Endpoints with these video parameters and sources (`sources(id, i)` for endpoint `i`).
    pub fn with_media(
        receivers: usize,
        cfg: SfuConfig,
        video: RtpParameters,
        sources: fn(&str, u32) -> Vec<MediaSourceDesc>,
    ) -> Self {
        Self::with_receivers(receivers, cfg, video, sources, false)
    }

    /// [`Fixture::new`] whose receivers have the `ssrc-rewriting` capability (media on the
    /// bridge's own SSRCs, `bridge::sfu::ssrc_slots`).
    pub fn ssrc_rewriting(receivers: usize) -> Self {
        Self::with_receivers(
            receivers,
            SfuConfig::default(),
            video_params(),
            sources,
            true,
        )
    }

    fn with_receivers(
        receivers: usize,
        cfg: SfuConfig,
        video: RtpParameters,
        sources: fn(&str, u32) -> Vec<MediaSourceDesc>,
        ssrc_rewriting: bool,
    ) -> Self {
        let now = Instant::now();
        let mut sfu = Sfu::new(cfg);
        let conf = sfu
            .create_conference(now, "bench-meeting", Some("bench@muc.example"))
            .expect("new conference");
        let mut sink = |_: Output<'_>| {};
        let mut handles = Vec::new();
        for i in 0..=receivers {
            let id = format!("ep{i:04}");
            let p = EndpointParams {
                sources: sources(&id, i as u32),
                id,
                audio: audio_params(),
                video: video.clone(),
                ssrc_rewriting: ssrc_rewriting && i > 0,
                ..Default::default()
            };
            let h = sfu
                .create_endpoint(now, conf, p, &mut sink)
                .expect("new endpoint");
            sfu.handle_transport_event(now, h, TransportEvent::Connected, &mut sink);
            sfu.handle_transport_event(now, h, TransportEvent::DataChannelOpen, &mut sink);
            handles.push(h);
        }
        let sender = handles.remove(0);
        Fixture {
            sfu,
            // Past the join-time keyframe requests.
            now: now + Duration::from_secs(1),
            sender,
            receivers: handles,
        }
    }
}

/// A pair of SRTP sessions keyed with fixed test keys, as the two ends of one DTLS-SRTP association
/// would be: what `tx` encrypts, `rx` decrypts. No handshake, so benches measure only the packet work.
pub fn srtp_pair(
    profile: bridge::transport::SrtpProfile,
) -> (
    bridge::transport::srtp::SrtpSession,
    bridge::transport::srtp::SrtpSession,
) {
    use bridge::transport::SrtpProfile;
    use bridge::transport::srtp::SrtpSession;
    use rtc_srtp::config::SessionKeys;
    let salt = match profile {
        SrtpProfile::AeadAes128Gcm => 12,
        SrtpProfile::Aes128CmHmacSha1_80 => 14,
    };
    let keys = |swap: bool| {
        let (a, b) = (
            (vec![1u8; 16], vec![3u8; salt]),
            (vec![2u8; 16], vec![4u8; salt]),
        );
        let (l, r) = if swap { (b, a) } else { (a, b) };
        SessionKeys {
            local_master_key: l.0,
            local_master_salt: l.1,
            remote_master_key: r.0,
            remote_master_salt: r.1,
        }
    };
    let provider = rtc_dtls::crypto_provider::default_provider().expect("crypto provider");
    let tx = SrtpSession::from_keys(profile, &keys(false), provider.as_ref()).expect("tx session");
    let rx = SrtpSession::from_keys(profile, &keys(true), provider.as_ref()).expect("rx session");
    (tx, rx)
}
