//! What the focus offers each participant: codecs (payload types, parameters, RTCP feedback, RTX) and RTP
//! header extensions per media, following Jicofo's defaults (`jicofo-common` `reference.conf`), adjusted to
//! the participant's advertised features. The same RTP parameters go into the Jingle offer and into the
//! COLIBRI2 `media` of the participant's endpoint, so client and bridge agree on ids.

use std::collections::BTreeSet;

use signaling::rtp_description::{PayloadType, RtpHdrExt, RtpParameters, hdrext};

/// A video codec and its RTX companion.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoCodec {
    pub enabled: bool,
    pub pt: u8,
    /// `None` disables RTX for this codec.
    pub rtx_pt: Option<u8>,
    /// Offer `goog-remb` when transport-cc is not used and the client supports REMB.
    pub enable_remb: bool,
}

/// The video codecs the focus can offer, in the order Jicofo's offer lists them (`CodecUtil`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum VideoCodecKind {
    Av1,
    Vp8,
    H264,
    Vp9,
}

impl VideoCodecKind {
    /// Payload order of the offer: AV1, VP8, H264, VP9.
    pub const OFFER_ORDER: [VideoCodecKind; 4] = [
        VideoCodecKind::Av1,
        VideoCodecKind::Vp8,
        VideoCodecKind::H264,
        VideoCodecKind::Vp9,
    ];

    /// The name lib-jitsi-meet uses for it (`CodecMimeType`, lower case): what `visitor-codecs`
    /// carries and what the configuration accepts.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodecKind::Av1 => "av1",
            VideoCodecKind::Vp8 => "vp8",
            VideoCodecKind::H264 => "h264",
            VideoCodecKind::Vp9 => "vp9",
        }
    }

    /// The encoding name in the offer (`a=rtpmap`).
    fn encoding(self) -> &'static str {
        match self {
            VideoCodecKind::Av1 => "AV1",
            VideoCodecKind::Vp8 => "VP8",
            VideoCodecKind::H264 => "H264",
            VideoCodecKind::Vp9 => "VP9",
        }
    }

    /// Reads a codec name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        Self::OFFER_ORDER
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// An audio payload type that can be switched off.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioCodec {
    pub enabled: bool,
    pub pt: u8,
}

/// A header extension that can be switched off.
#[derive(Debug, Clone, PartialEq)]
pub struct Extension {
    pub enabled: bool,
    pub id: u8,
}

const fn ext(enabled: bool, id: u8) -> Extension {
    Extension { enabled, id }
}

/// RTP header extensions, ids as in Jicofo (mid and VLA off as docker-jitsi-meet renders them).
#[derive(Debug, Clone, PartialEq)]
pub struct Extensions {
    pub audio_level: Extension,
    pub av1_dependency_descriptor: Extension,
    pub video_layers_allocation: Extension,
    pub tof: Extension,
    pub abs_send_time: Extension,
    pub rid: Extension,
    pub tcc: Extension,
    pub video_content_type: Extension,
    pub framemarking: Extension,
    pub mid: Extension,
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            audio_level: ext(true, 1),
            av1_dependency_descriptor: ext(true, 11),
            video_layers_allocation: ext(false, 12),
            tof: ext(false, 2),
            abs_send_time: ext(true, 3),
            rid: ext(false, 4),
            tcc: ext(true, 5),
            video_content_type: ext(false, 7),
            framemarking: ext(false, 9),
            mid: ext(false, 10),
        }
    }
}

impl Extensions {
    /// Looks an extension up by its Jicofo configuration name.
    pub fn by_name(&mut self, name: &str) -> Option<&mut Extension> {
        Some(match name {
            "audio-level" => &mut self.audio_level,
            "av1-dependency-descriptor" => &mut self.av1_dependency_descriptor,
            "video-layers-allocation" => &mut self.video_layers_allocation,
            "tof" => &mut self.tof,
            "abs-send-time" => &mut self.abs_send_time,
            "rid" => &mut self.rid,
            "tcc" => &mut self.tcc,
            "video-content-type" => &mut self.video_content_type,
            "framemarking" => &mut self.framemarking,
            "mid" => &mut self.mid,
            _ => return None,
        })
    }
}

/// Codec configuration (Jicofo `jicofo.codec`).
#[derive(Debug, Clone, PartialEq)]
pub struct CodecConfig {
    pub av1: VideoCodec,
    pub vp8: VideoCodec,
    pub vp9: VideoCodec,
    pub h264: VideoCodec,
    pub opus: AudioCodec,
    pub opus_minptime: u32,
    pub opus_inband_fec: bool,
    pub opus_red: AudioCodec,
    pub telephone_event: AudioCodec,
    pub extensions: Extensions,
    pub extmap_allow_mixed: bool,
    /// The video codecs the bridge forwards correctly: an enabled codec outside this set is not
    /// offered (ours; Jicofo offers whatever is enabled). Default: all four, as Jicofo offers them.
    pub bridge_video_codecs: BTreeSet<VideoCodecKind>,
}

impl Default for CodecConfig {
    fn default() -> Self {
        let video = |pt, rtx| VideoCodec {
            enabled: true,
            pt,
            rtx_pt: Some(rtx),
            enable_remb: true,
        };
        CodecConfig {
            av1: video(41, 42),
            vp8: video(100, 96),
            vp9: video(101, 97),
            h264: video(107, 99),
            opus: AudioCodec {
                enabled: true,
                pt: 111,
            },
            opus_minptime: 10,
            opus_inband_fec: true,
            opus_red: AudioCodec {
                enabled: false,
                pt: 112,
            },
            telephone_event: AudioCodec {
                enabled: true,
                pt: 126,
            },
            extensions: Extensions::default(),
            extmap_allow_mixed: true,
            bridge_video_codecs: VideoCodecKind::OFFER_ORDER.into_iter().collect(),
        }
    }
}

impl CodecConfig {
    /// Refuses configurations that would produce an unusable offer (duplicate payload type or extension ids).
    pub fn validate(&self) -> Result<(), String> {
        let mut pts: Vec<(u8, &str)> = Vec::new();
        for kind in self.offered_video_codecs() {
            let (name, c) = (kind.name(), self.video(kind));
            pts.push((c.pt, name));
            if let Some(r) = c.rtx_pt {
                pts.push((r, name));
            }
        }
        if self.opus.enabled {
            pts.push((self.opus.pt, "opus"));
        }
        if self.opus_red.enabled {
            pts.push((self.opus_red.pt, "red"));
        }
        if self.telephone_event.enabled {
            pts.push((self.telephone_event.pt, "telephone-event"));
        }
        for (i, (pt, name)) in pts.iter().enumerate() {
            if *pt > 127 {
                return Err(format!("payload type {pt} of {name} is above 127"));
            }
            if let Some((_, other)) = pts[..i].iter().find(|(p, _)| p == pt) {
                return Err(format!(
                    "payload type {pt} is used by both {other} and {name}"
                ));
            }
        }
        if self.offered_video_codecs().is_empty() {
            return Err(format!(
                "no video codec is both enabled and forwarded by the bridge (bridge video codecs: {})",
                self.bridge_video_codecs
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if !self.opus.enabled {
            return Err("opus must be enabled".into());
        }
        let e = &self.extensions;
        let exts = [
            &e.audio_level,
            &e.av1_dependency_descriptor,
            &e.video_layers_allocation,
            &e.tof,
            &e.abs_send_time,
            &e.rid,
            &e.tcc,
            &e.video_content_type,
            &e.framemarking,
            &e.mid,
        ];
        let ids: Vec<u8> = exts.iter().filter(|x| x.enabled).map(|x| x.id).collect();
        for (i, id) in ids.iter().enumerate() {
            if *id == 0 || *id > 14 {
                return Err(format!("header extension id {id} is outside 1..=14"));
            }
            if ids[..i].contains(id) {
                return Err(format!("header extension id {id} is used twice"));
            }
        }
        Ok(())
    }

    /// The configuration of one video codec.
    pub fn video(&self, kind: VideoCodecKind) -> &VideoCodec {
        match kind {
            VideoCodecKind::Av1 => &self.av1,
            VideoCodecKind::Vp8 => &self.vp8,
            VideoCodecKind::H264 => &self.h264,
            VideoCodecKind::Vp9 => &self.vp9,
        }
    }

    /// The configuration of one video codec, mutably.
    pub fn video_mut(&mut self, kind: VideoCodecKind) -> &mut VideoCodec {
        match kind {
            VideoCodecKind::Av1 => &mut self.av1,
            VideoCodecKind::Vp8 => &mut self.vp8,
            VideoCodecKind::H264 => &mut self.h264,
            VideoCodecKind::Vp9 => &mut self.vp9,
        }
    }

    /// Whether `kind` goes into offers: enabled (`ENABLE_CODEC_*`, `codec.video.<name>.enabled`) and
    /// forwarded by the bridge.
    pub fn offers(&self, kind: VideoCodecKind) -> bool {
        self.video(kind).enabled && self.bridge_video_codecs.contains(&kind)
    }

    /// The video codecs every offer carries, in the offer's payload order.
    pub fn offered_video_codecs(&self) -> Vec<VideoCodecKind> {
        VideoCodecKind::OFFER_ORDER
            .into_iter()
            .filter(|k| self.offers(*k))
            .collect()
    }

    /// The `visitor-codecs` conference property: the offered video codecs, lower case, comma
    /// separated, in the offer's order (`av1,vp8,h264,vp9` by default). The current lib-jitsi-meet
    /// treats it as one more participant's codec list and drops from its own preference whatever the
    /// list lacks (`JitsiConference` → `CodecSelection.updateVisitorCodecs`), so a client never
    /// configures its sender for a codec the offer did not negotiate.
    pub fn visitor_codecs(&self) -> String {
        self.offered_video_codecs()
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Which optional parts a participant gets, from its advertised features (Jicofo `OfferOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferOptions {
    pub audio: bool,
    pub video: bool,
    pub sctp: bool,
    pub tcc: bool,
    pub remb: bool,
    pub rtx: bool,
    pub opus_red: bool,
}

impl OfferOptions {
    /// The options for a participant with `features`: REMB only when transport-cc is not used.
    pub fn for_features(f: &Features) -> Self {
        let tcc = f.tcc;
        OfferOptions {
            audio: f.audio,
            video: f.video,
            sctp: f.sctp,
            tcc,
            remb: !tcc && f.remb,
            rtx: f.rtx,
            opus_red: f.opus_red,
        }
    }
}

/// What a participant's client supports (from disco#info on its occupant JID; Jicofo `Features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub audio: bool,
    pub video: bool,
    pub sctp: bool,
    pub rtx: bool,
    pub remb: bool,
    pub tcc: bool,
    pub opus_red: bool,
    pub json_sources: bool,
    pub source_names: bool,
    pub ssrc_rewriting: bool,
    /// Demuxes forwarded media by the sdes:mid extension (with SSRC rewriting only).
    pub rtp_mid_demux: bool,
}

impl Default for Features {
    /// What Jicofo assumes when a client does not answer disco#info: audio, video and SCTP.
    fn default() -> Self {
        Features {
            audio: true,
            video: true,
            sctp: true,
            rtx: false,
            remb: false,
            tcc: false,
            opus_red: false,
            json_sources: false,
            source_names: false,
            ssrc_rewriting: false,
            rtp_mid_demux: false,
        }
    }
}

impl Features {
    /// Reads the feature `var`s of a disco#info answer.
    pub fn from_vars<'a>(vars: impl IntoIterator<Item = &'a str>) -> Self {
        let mut f = Features {
            audio: false,
            video: false,
            sctp: false,
            ..Features::default()
        };
        for v in vars {
            match v {
                "urn:xmpp:jingle:apps:rtp:audio" => f.audio = true,
                "urn:xmpp:jingle:apps:rtp:video" => f.video = true,
                "urn:xmpp:jingle:transports:dtls-sctp:1" => f.sctp = true,
                "urn:ietf:rfc:4588" => f.rtx = true,
                "http://jitsi.org/remb" => f.remb = true,
                "http://jitsi.org/tcc" => f.tcc = true,
                "http://jitsi.org/opus-red" => f.opus_red = true,
                "http://jitsi.org/json-encoded-sources" => f.json_sources = true,
                "http://jitsi.org/source-name" => f.source_names = true,
                "http://jitsi.org/ssrc-rewriting-1" => f.ssrc_rewriting = true,
                "http://jitsi.org/rtp-mid-demux" => f.rtp_mid_demux = true,
                _ => {}
            }
        }
        f
    }
}

/// The RTP parameters of the audio content.
pub fn audio_parameters(c: &CodecConfig, o: &OfferOptions) -> RtpParameters {
    let mut pts = Vec::new();
    if c.opus.enabled {
        let red = c.opus_red.enabled && o.opus_red;
        if red {
            // RED first so that it is the selected codec; fmtp is the unnamed `111/111`.
            let mut red_pt = PayloadType::new(c.opus_red.pt, "red", 48000, Some(2));
            red_pt
                .parameters
                .push(signaling::rtp_description::Parameter::new(
                    "",
                    format!("{}/{}", c.opus.pt, c.opus.pt),
                ));
            pts.push(red_pt);
        }
        let mut opus = PayloadType::new(c.opus.pt, "opus", 48000, Some(2))
            .with_parameter("minptime", &c.opus_minptime.to_string());
        // Avoid double FEC when RED is configured.
        if c.opus_inband_fec && !c.opus_red.enabled {
            opus = opus.with_parameter("useinbandfec", "1");
        }
        if c.extensions.tcc.enabled && o.tcc {
            opus = opus.with_rtcp_fb("transport-cc", None);
        }
        pts.push(opus);
    }
    if c.telephone_event.enabled {
        pts.push(PayloadType::new(
            c.telephone_event.pt,
            "telephone-event",
            8000,
            None,
        ));
    }
    let e = &c.extensions;
    let mut exts = Vec::new();
    if e.audio_level.enabled {
        exts.push(RtpHdrExt::new(e.audio_level.id, hdrext::AUDIO_LEVEL));
    }
    if e.mid.enabled {
        exts.push(RtpHdrExt::new(e.mid.id, hdrext::MID));
    }
    if e.tcc.enabled && o.tcc {
        exts.push(RtpHdrExt::new(e.tcc.id, hdrext::TRANSPORT_CC));
    }
    RtpParameters {
        payload_types: pts,
        header_extensions: exts,
        extmap_allow_mixed: c.extmap_allow_mixed,
    }
}

/// The RTP parameters of the video content: AV1, VP8, H264, VP9, then their RTX payload types.
pub fn video_parameters(c: &CodecConfig, o: &OfferOptions) -> RtpParameters {
    let mut pts = Vec::new();
    let tcc = c.extensions.tcc.enabled && o.tcc;
    let feedback = |mut pt: PayloadType, codec: &VideoCodec| {
        pt = pt
            .with_rtcp_fb("ccm", Some("fir"))
            .with_rtcp_fb("nack", None)
            .with_rtcp_fb("nack", Some("pli"));
        if codec.enable_remb && o.remb {
            pt = pt.with_rtcp_fb("goog-remb", None);
        }
        if tcc {
            pt = pt.with_rtcp_fb("transport-cc", None);
        }
        pt
    };
    for kind in c.offered_video_codecs() {
        let mut pt = PayloadType::new(c.video(kind).pt, kind.encoding(), 90000, None);
        if kind == VideoCodecKind::H264 {
            // Jicofo writes the whole fmtp in one parameter; browsers accept it.
            pt = pt.with_parameter(
                "profile-level-id",
                "42e01f;level-asymmetry-allowed=1;packetization-mode=1;",
            );
        }
        pts.push(feedback(pt, c.video(kind)));
    }
    if o.rtx {
        // Jicofo's RTX order (AV1, VP8, VP9, H264) differs from the codecs'; H264's RTX has no
        // feedback types (`CodecUtil.createVideoPayloadTypeExtensions`).
        for (kind, with_fb) in [
            (VideoCodecKind::Av1, true),
            (VideoCodecKind::Vp8, true),
            (VideoCodecKind::Vp9, true),
            (VideoCodecKind::H264, false),
        ] {
            let codec = c.video(kind);
            if let (true, Some(rtx)) = (c.offers(kind), codec.rtx_pt) {
                let mut pt = PayloadType::new(rtx, "rtx", 90000, None)
                    .with_parameter("apt", &codec.pt.to_string());
                if with_fb {
                    pt = pt
                        .with_rtcp_fb("ccm", Some("fir"))
                        .with_rtcp_fb("nack", None)
                        .with_rtcp_fb("nack", Some("pli"));
                }
                pts.push(pt);
            }
        }
    }
    let e = &c.extensions;
    let mut exts = Vec::new();
    let mut add = |x: &Extension, uri: &str| {
        if x.enabled {
            exts.push(RtpHdrExt::new(x.id, uri));
        }
    };
    add(&e.video_layers_allocation, hdrext::VIDEO_LAYERS_ALLOCATION);
    add(
        &e.av1_dependency_descriptor,
        hdrext::AV1_DEPENDENCY_DESCRIPTOR,
    );
    add(&e.tof, hdrext::TOFFSET);
    add(&e.mid, hdrext::MID);
    add(&e.abs_send_time, hdrext::ABS_SEND_TIME);
    add(
        &e.framemarking,
        "http://tools.ietf.org/html/draft-ietf-avtext-framemarking-07",
    );
    add(
        &e.video_content_type,
        "http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
    );
    add(&e.rid, hdrext::RID);
    if tcc {
        add(&e.tcc, hdrext::TRANSPORT_CC);
    }
    RtpParameters {
        payload_types: pts,
        header_extensions: exts,
        // Chromium writes no Dependency Descriptor (longer than 16 bytes on a keyframe: a two-byte
        // extension) unless the offer allows mixed one- and two-byte extensions, and an AV1 SVC
        // stream without it cannot be projected: receivers freeze (bridge/tests/browser_svc.rs).
        extmap_allow_mixed: c.extmap_allow_mixed || e.av1_dependency_descriptor.enabled,
    }
}

/// The media a participant is offered.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub audio: Option<RtpParameters>,
    pub video: Option<RtpParameters>,
    /// An SCTP data channel (the bridge channel) in a `data` content.
    pub sctp: bool,
}

impl Offer {
    pub fn new(c: &CodecConfig, o: &OfferOptions) -> Self {
        Offer {
            audio: o.audio.then(|| audio_parameters(c, o)),
            video: o.video.then(|| video_parameters(c, o)),
            sctp: o.sctp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrome_features() -> Features {
        Features::from_vars([
            "urn:xmpp:jingle:apps:rtp:audio",
            "urn:xmpp:jingle:apps:rtp:video",
            "urn:xmpp:jingle:transports:dtls-sctp:1",
            "urn:ietf:rfc:4588",
            "http://jitsi.org/remb",
            "http://jitsi.org/tcc",
            "http://jitsi.org/json-encoded-sources",
        ])
    }

    #[test]
    fn default_offer_matches_jicofo() {
        let c = CodecConfig::default();
        c.validate().unwrap();
        let o = OfferOptions::for_features(&chrome_features());
        assert!(o.tcc && !o.remb && o.rtx && o.sctp);
        let offer = Offer::new(&c, &o);
        let a = offer.audio.unwrap();
        let ids: Vec<_> = a
            .payload_types
            .iter()
            .map(|p| (p.id, p.name.as_str()))
            .collect();
        assert_eq!(ids, [(111, "opus"), (126, "telephone-event")]);
        assert_eq!(a.payload_types[0].parameter("useinbandfec"), Some("1"));
        assert!(a.payload_types[0].has_rtcp_fb("transport-cc", None));
        assert_eq!(a.hdrext_id(hdrext::AUDIO_LEVEL), Some(1));
        assert_eq!(a.hdrext_id(hdrext::TRANSPORT_CC), Some(5));
        assert_eq!(a.hdrext_id(hdrext::MID), None);

        let v = offer.video.unwrap();
        let ids: Vec<_> = v
            .payload_types
            .iter()
            .map(|p| (p.id, p.name.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                (41, "AV1"),
                (100, "VP8"),
                (107, "H264"),
                (101, "VP9"),
                (42, "rtx"),
                (96, "rtx"),
                (97, "rtx"),
                (99, "rtx")
            ]
        );
        // Every video codec (AV1 and VP9 too) gets FIR, NACK, PLI and transport-cc, never REMB with
        // TCC: without `nack pli` on a payload type Chromium never asks for its keyframes.
        for codec in &v.payload_types[..4] {
            for (t, sub) in [("ccm", Some("fir")), ("nack", None), ("nack", Some("pli"))] {
                assert!(codec.has_rtcp_fb(t, sub), "{} {t} {sub:?}", codec.name);
            }
            assert!(codec.has_rtcp_fb("transport-cc", None), "{}", codec.name);
            assert!(!codec.has_rtcp_fb("goog-remb", None), "{}", codec.name);
        }
        assert_eq!(
            v.payload_types[2].parameter("profile-level-id"),
            Some("42e01f;level-asymmetry-allowed=1;packetization-mode=1;")
        );
        // RTX: apt of each, FIR/NACK/PLI on all but H264's (as Jicofo's CodecUtil).
        let apts: Vec<_> = v.payload_types[4..].iter().map(|p| p.apt()).collect();
        assert_eq!(apts, [Some(41), Some(100), Some(101), Some(107)]);
        for rtx in &v.payload_types[4..7] {
            assert!(rtx.has_rtcp_fb("nack", Some("pli")) && rtx.has_rtcp_fb("ccm", Some("fir")));
        }
        assert!(v.payload_types[7].rtcp_fb.is_empty());
        assert_eq!(v.hdrext_id(hdrext::ABS_SEND_TIME), Some(3));
        assert_eq!(v.hdrext_id(hdrext::AV1_DEPENDENCY_DESCRIPTOR), Some(11));
        assert_eq!(v.hdrext_id(hdrext::TRANSPORT_CC), Some(5));
        assert!(v.extmap_allow_mixed);
        // The descriptor needs mixed extensions: kept for video even when configured off.
        let no_mixed = CodecConfig {
            extmap_allow_mixed: false,
            ..CodecConfig::default()
        };
        assert!(
            video_parameters(&no_mixed, &OfferOptions::for_features(&chrome_features()))
                .extmap_allow_mixed
        );
        assert!(
            !audio_parameters(&no_mixed, &OfferOptions::for_features(&chrome_features()))
                .extmap_allow_mixed
        );
        let mut no_dd = no_mixed.clone();
        no_dd.extensions.av1_dependency_descriptor.enabled = false;
        assert!(
            !video_parameters(&no_dd, &OfferOptions::for_features(&chrome_features()))
                .extmap_allow_mixed
        );
    }

    #[test]
    fn remb_replaces_tcc_for_clients_without_tcc() {
        let f = Features {
            remb: true,
            ..Features::default()
        };
        let o = OfferOptions::for_features(&f);
        assert!(!o.tcc && o.remb && !o.rtx);
        let v = video_parameters(&CodecConfig::default(), &o);
        assert!(v.payload_types.iter().all(|p| p.name != "rtx"));
        assert!(v.payload_types[0].has_rtcp_fb("goog-remb", None));
        assert_eq!(v.hdrext_id(hdrext::TRANSPORT_CC), None);
    }

    #[test]
    fn disabled_codecs_and_duplicate_ids_are_caught() {
        let mut c = CodecConfig::default();
        c.h264.enabled = false;
        c.av1.enabled = false;
        let v = video_parameters(&c, &OfferOptions::for_features(&chrome_features()));
        assert!(
            v.payload_types
                .iter()
                .all(|p| p.name != "H264" && p.name != "AV1")
        );
        assert!(v.payload_types.iter().all(|p| p.apt() != Some(107)));
        c.vp9.pt = 100;
        assert!(c.validate().unwrap_err().contains("100"));
    }

    #[test]
    fn only_enabled_codecs_the_bridge_forwards_are_offered() {
        let o = OfferOptions::for_features(&chrome_features());
        let names = |c: &CodecConfig| -> Vec<(u8, String)> {
            video_parameters(c, &o)
                .payload_types
                .iter()
                .map(|p| (p.id, p.name.clone()))
                .collect()
        };
        let mut c = CodecConfig::default();
        assert_eq!(c.visitor_codecs(), "av1,vp8,h264,vp9");
        // ENABLE_CODEC_AV1=0 ENABLE_CODEC_VP9=0: VP8 and H264 with their RTX, and the client is told.
        c.av1.enabled = false;
        c.vp9.enabled = false;
        assert_eq!(
            names(&c),
            [
                (100, "VP8".into()),
                (107, "H264".into()),
                (96, "rtx".into()),
                (99, "rtx".into())
            ]
        );
        assert_eq!(c.visitor_codecs(), "vp8,h264");
        c.validate().unwrap();
        // A bridge that forwards only VP8 and VP9: AV1 stays out even though it is enabled.
        let mut c = CodecConfig {
            bridge_video_codecs: [VideoCodecKind::Vp9, VideoCodecKind::Vp8].into(),
            ..CodecConfig::default()
        };
        assert_eq!(
            names(&c),
            [
                (100, "VP8".into()),
                (101, "VP9".into()),
                (96, "rtx".into()),
                (97, "rtx".into())
            ]
        );
        assert_eq!(c.visitor_codecs(), "vp8,vp9");
        // The payload types of codecs that are not offered may be reused.
        c.av1.pt = 100;
        c.validate().unwrap();
        // Nothing left to offer is refused.
        c.vp8.enabled = false;
        c.vp9.enabled = false;
        assert!(c.validate().unwrap_err().contains("no video codec"));
    }

    #[test]
    fn codec_names_are_lib_jitsi_meets() {
        for k in VideoCodecKind::OFFER_ORDER {
            assert_eq!(VideoCodecKind::parse(k.name()), Some(k));
            assert_eq!(VideoCodecKind::parse(&k.name().to_uppercase()), Some(k));
        }
        assert_eq!(VideoCodecKind::parse("hevc"), None);
    }

    #[test]
    fn modern_client_features_are_read() {
        let f = Features::from_vars([
            "http://jitsi.org/source-name",
            "http://jitsi.org/ssrc-rewriting-1",
            "http://jitsi.org/rtp-mid-demux",
        ]);
        assert!(f.source_names && f.ssrc_rewriting && f.rtp_mid_demux);
        assert!(!Features::from_vars(["http://jitsi.org/ssrc-rewriting-1"]).rtp_mid_demux);
    }

    #[test]
    fn red_goes_first_when_enabled_and_supported() {
        let mut c = CodecConfig::default();
        c.opus_red.enabled = true;
        let mut f = chrome_features();
        f.opus_red = true;
        let a = audio_parameters(&c, &OfferOptions::for_features(&f));
        assert_eq!(a.payload_types[0].name, "red");
        assert_eq!(a.payload_types[1].parameter("useinbandfec"), None);
    }
}
