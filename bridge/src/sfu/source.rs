//! A source an endpoint publishes (a COLIBRI2 `media-source`) as the router holds it: its
//! encodings, what the bridge measured of them, the packets kept for retransmissions, and what the
//! owner was asked for (keyframes, constraints).
//!
//! Sources live in the conference's source table, indexed by slot, because every receiver's
//! projection of a source is indexed by the same slot; each belongs to one sender
//! ([`MediaSource::owner`], listed in its [`Uplink`](super::uplink::Uplink)). The measurement stage
//! of the packet path is here: [`MediaSource::on_audio_level`] (silence) and
//! [`MediaSource::measure`] (per-layer bitrate, heights from keyframes).

use signaling::sources::VideoType;

use super::codec::VideoInfo;
use super::keyframe::RateLimit;
use super::layers::SourceLayers;
use super::model::{Encoding, MediaKind};
use super::rtx_cache::PacketStore;

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
    /// maxHeight last announced to the owner (`SenderSourceConstraints`), `None` before the first.
    pub sent_max_height: Option<i32>,
    /// Consecutive silent audio packets (level 127) seen.
    pub silence_run: u32,
    /// Active layers at the last check ([`SourceLayers::active_mask`]).
    pub active_mask: u64,
}

impl MediaSource {
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
            sent_max_height: None,
            silence_run: 0,
            active_mask: 0,
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

    /// A video packet of `encoding` counted into its layer's bitrate; a keyframe's size updates the
    /// encoding's height. True when the layers changed (a layer started, a height changed): the
    /// allocation should run again.
    pub fn measure(&mut self, now_ms: u64, encoding: u8, info: &VideoInfo, bytes: usize) -> bool {
        let Some(l) = self.layers.as_mut() else {
            return false;
        };
        let started = l.on_packet(now_ms, encoding, info.tid, bytes);
        let resized = info
            .size
            .is_some_and(|(_, h)| l.set_height(encoding, i32::from(h)));
        started || resized
    }
}
