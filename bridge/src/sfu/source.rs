//! A source an endpoint publishes (a COLIBRI2 `media-source`) as the router holds it: its
//! encodings, what the bridge measured of them, the packets kept for retransmissions, and what the
//! owner was asked for (keyframes).
//!
//! Sources live in the conference's source table, indexed by slot, because every receiver's
//! projection of a source is indexed by the same slot; each belongs to one sender
//! ([`MediaSource::owner`], listed in its [`Uplink`](super::uplink::Uplink)). The measurement stage
//! of the packet path is here: [`MediaSource::on_audio_level`] (silence) and
//! [`MediaSource::measure`] (per-layer bitrate, heights from keyframes).

use signaling::sources::VideoType;

use super::av1::{DdError, DdInfo, DdSource};
use super::codec::{FrameDesc, StreamState, VideoInfo};
use super::keyframe::RateLimit;
use super::layers::SourceLayers;
use super::model::{Encoding, MediaKind};
use super::projection::DdConfig;
use super::rtp::RtpPacket;
use super::rtx_cache::{PacketStore, StoreRef};
use super::vp9::{Vp9Error, Vp9Info, Vp9Source};

/// A source registered in a conference.
#[derive(Debug)]
pub struct MediaSource {
    pub generation: u32,
    /// Slot of the publishing endpoint.
    pub owner: u32,
    pub name: String,
    pub kind: MediaKind,
    pub video_type: VideoType,
    pub encodings: Vec<Encoding>,
    /// FIR command sequence number (RFC 5104) toward the owner, per source.
    pub fir_seq: u8,
    /// Source-wide keyframe request limiter.
    pub keyframe_limit: RateLimit,
    /// Recent ingress packets, for retransmissions to receivers (video only).
    pub store: Option<PacketStore>,
    /// Measured layers (video only).
    pub layers: Option<SourceLayers>,
    /// Consecutive silent audio packets (level 127) seen.
    pub silence_run: u32,
    /// Active layers at the last check ([`SourceLayers::active_mask`]).
    pub active_mask: u64,
    /// Per encoding, the codec state of its stream (AV1, VP9), from its first parsed packet on.
    streams: Vec<Option<Box<StreamState>>>,
}

impl MediaSource {
    /// A packet this source's store still holds, parsed (retransmissions and probes rebuild
    /// from it).
    pub fn stored_packet(&self, r: StoreRef) -> Option<RtpPacket<'_>> {
        self.store
            .as_ref()
            .and_then(|st| st.get(r))
            .and_then(|b| RtpPacket::parse(b).ok())
    }

    pub fn new(
        generation: u32,
        owner: u32,
        name: String,
        kind: MediaKind,
        video_type: VideoType,
        encodings: Vec<Encoding>,
        rtx_store_packets: usize,
    ) -> Self {
        let video = kind == MediaKind::Video;
        MediaSource {
            generation,
            owner,
            video_type,
            name,
            kind,
            fir_seq: 0,
            keyframe_limit: RateLimit::per_source(),
            store: video.then(|| PacketStore::new(rtx_store_packets)),
            layers: video.then(|| SourceLayers::new(encodings.len())),
            silence_run: 0,
            active_mask: 0,
            streams: Vec::new(),
            encodings,
        }
    }

    /// The encoding the receivers are told about (first SIM SSRC).
    pub fn primary(&self) -> Option<&Encoding> {
        self.encodings.first()
    }

    /// An audio packet's level (RFC 6464, 127 = silence): true when the packet is silence past the
    /// first `forwarded` silent packets (comfort noise) and may be discarded.
    pub fn on_audio_level(&mut self, level: u8, forwarded: u32) -> bool {
        if level >= 127 {
            self.silence_run = self.silence_run.saturating_add(1);
            self.silence_run > forwarded
        } else {
            self.silence_run = 0;
            false
        }
    }

    /// Parses a packet's Dependency Descriptor (the header extension's bytes) against its
    /// encoding's stream state. An error: drop the packet for everyone.
    pub fn parse_descriptor(&mut self, encoding: u8, ext: &[u8]) -> Result<DdInfo, DdError> {
        let s = self.stream_mut(
            encoding,
            |s| matches!(s, StreamState::Dd(_)),
            || StreamState::Dd(DdSource::new()),
        );
        match s {
            StreamState::Dd(d) => d.parse(ext),
            StreamState::Vp9(_) => Err(DdError::NoStructure),
        }
    }

    /// Parses a VP9 packet's payload descriptor against its encoding's stream state.
    /// `NotProjectable` (no PictureID or layer indices): forward it without layer knowledge;
    /// another error: drop it for everyone.
    pub fn parse_vp9(&mut self, encoding: u8, payload: &[u8]) -> Result<Vp9Info, Vp9Error> {
        let s = self.stream_mut(
            encoding,
            |s| matches!(s, StreamState::Vp9(_)),
            || StreamState::Vp9(Vp9Source::new()),
        );
        match s {
            StreamState::Vp9(v) => v.parse(payload),
            StreamState::Dd(_) => Err(Vp9Error::NotProjectable),
        }
    }

    /// `encoding`'s stream state, made by `new` when there is none or it is not `is_kind` (the
    /// sender changed codec).
    fn stream_mut(
        &mut self,
        encoding: u8,
        is_kind: impl Fn(&StreamState) -> bool,
        new: impl Fn() -> StreamState,
    ) -> &mut StreamState {
        let i = usize::from(encoding);
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, || None);
        }
        let slot = &mut self.streams[i];
        if !slot.as_deref().is_some_and(&is_kind) {
            *slot = Some(Box::new(new()));
        }
        slot.get_or_insert_with(|| Box::new(new()))
    }

    /// Lends `encoding`'s stream state out for one fan-out (the receivers' projections read it
    /// while the packet store is written); give it back with [`Self::return_stream_state`].
    pub fn lend_stream_state(&mut self, encoding: u8) -> Option<Box<StreamState>> {
        self.streams.get_mut(usize::from(encoding))?.take()
    }

    pub fn return_stream_state(&mut self, encoding: u8, s: Box<StreamState>) {
        if let Some(slot) = self.streams.get_mut(usize::from(encoding)) {
            *slot = Some(s);
        }
    }

    /// A video packet of `encoding` counted into its layer's bitrate; a keyframe's size updates the
    /// encoding's height. True when the layers changed (a layer started, a height changed): the
    /// allocation should run again.
    ///
    /// An SVC stream (an encoding whose VP9 scalability structure or Dependency Descriptor
    /// structure has several spatial layers) is measured per decode target: each spatial layer
    /// counts as an encoding of the allocation's (height from the structure's render resolution),
    /// whichever of the signalled SSRCs carries it — the current lib-jitsi-meet signals a SIM group
    /// of three in full-SVC mode and sends on one (`svc_layers` in `projection/layered.rs` maps
    /// back). A packet counts toward
    /// every decode target whose receivers get it (`DdSource::forwarded_to`), in the lowest
    /// temporal layer of each spatial layer that needs it, so that the cumulative temporal rates
    /// are the decode targets' bitrates.
    pub fn measure(&mut self, now_ms: u64, encoding: u8, info: &VideoInfo, bytes: usize) -> bool {
        let Some(l) = self.layers.as_mut() else {
            return false;
        };
        let stream = self
            .streams
            .get(usize::from(encoding))
            .and_then(|s| s.as_deref());
        if let (FrameDesc::Vp9(v), Some(StreamState::Vp9(vs))) = (&info.frame, stream)
            && vs.spatial_layers() > 1
        {
            // A receiver of spatial layer s gets its frames, the lower layers' frames its layer
            // refers to (Z clear: full SVC) and, to keep the lower layers' temporal bases intact,
            // theirs (K-SVC, `Vp9Config::keep_lower_chains`).
            let n = vs.spatial_layers();
            l.svc = true;
            let mut changed = l.set_encoding_count(usize::from(n));
            if let Some(ss) = vs.scalability().filter(|_| v.header.has_ss()) {
                for s in 0..n {
                    if let Some(h) = ss.height(s) {
                        changed |= l.set_height(s, i32::from(h));
                    }
                }
            }
            let (sid, tid) = (v.header.sid, v.header.tid);
            changed |= l.on_packet(now_ms, sid, tid, bytes);
            if tid == 0 || !v.header.not_ref_for_upper {
                for s in sid + 1..n {
                    changed |= l.on_packet(now_ms, s, tid, bytes);
                }
            }
            return changed;
        }
        if let (FrameDesc::Av1(d), Some(StreamState::Dd(dd))) = (&info.frame, stream)
            && dd.spatial_layers() > 1
        {
            l.svc = true;
            let mut changed = l.set_encoding_count(usize::from(dd.spatial_layers()));
            let mask = dd.forwarded_to(d, DdConfig::default().keep_lower_chains);
            let mut lowest = [u8::MAX; 8];
            for t in dd.decode_targets() {
                let s = usize::from(t.spatial).min(7);
                if d.starts_keyframe()
                    && let Some(r) = t.resolution
                {
                    changed |= l.set_height(t.spatial, i32::from(r.height));
                }
                if mask & (1 << t.index) != 0 {
                    lowest[s] = lowest[s].min(t.temporal);
                }
            }
            for (s, &t) in lowest.iter().enumerate() {
                if t != u8::MAX {
                    changed |= l.on_packet(now_ms, s as u8, t, bytes);
                }
            }
            return changed;
        }
        if stream.is_some_and(|s| s.spatial_layers() > 1) {
            // A packet of an SVC stream without its descriptor: not attributable to a layer.
            return false;
        }
        // Simulcast (again, after an SVC stream had the allocation see its spatial layers).
        l.svc = false;
        let regrouped = l.set_encoding_count(self.encodings.len());
        let started = l.on_packet(now_ms, encoding, info.tid, bytes);
        let resized = info
            .size
            .is_some_and(|(_, h)| l.set_height(encoding, i32::from(h)));
        regrouped || started || resized
    }
}
