//! AV1 SVC as Chromium sends it for the current lib-jitsi-meet: one RTP stream carrying up to three
//! spatial layers (320x180, 640x360, 1280x720) with three temporal layers each, K-SVC
//! (`scalabilityMode` `L3T3_KEY`, `L2T3_KEY`, and `L1T3` for one layer: lib-jitsi-meet
//! `modules/RTC/TPCUtils.ts` picks the mode from the height the bridge asks for), described by the
//! Dependency Descriptor RTP header extension (AV1 RTP specification, appendix A).
//!
//! [`KsvcEncoder`] is the frame plan of such an encoder, sans-IO: per temporal unit (one per frame
//! interval) one frame per active spatial layer with its frame number and template; keyframes
//! (on request or when the number of spatial layers changes) attach the template dependency
//! structure. The structure is libwebrtc's key-SVC one: per spatial layer a keyframe template, a
//! T0 template referring to the same layer's previous T0 (4 temporal units back), T1 and two T2
//! templates (after T0 and after T1); decode target `3·s + t` is spatial layer `s` up to temporal
//! layer `t`, one chain per spatial layer. The loadtest's unit test checks it against a capture of
//! Chromium 156 (`bridge/src/sfu/testdata/chrome156_av1_l3t3_key.txt`). Descriptors are written
//! with the bridge's own writer (`bridge::sfu::av1::descriptor`).

use bridge::sfu::av1::descriptor::{self, DdError, Fields};
use bridge::sfu::av1::{FrameDeps, Resolution, Structure};

/// Temporal layers of every mode sent here.
pub const TEMPORAL_LAYERS: u8 = 3;
/// Most spatial layers (`L3T3_KEY`).
pub const MAX_SPATIAL_LAYERS: u8 = 3;
/// Templates per spatial layer: keyframe, T0, T1, T2 after T0, T2 after T1.
const TEMPLATES_PER_LAYER: u8 = 5;

/// Resolution of spatial layer `s` (a 1280x720 capture scaled down by 4, 2, 1).
pub fn layer_resolution(s: u8) -> Resolution {
    Resolution {
        width: 320 << s.min(2),
        height: 180 << s.min(2),
    }
}

/// Bitrate of spatial layer `s` with `n` spatial layers active. The totals are lib-jitsi-meet's AV1
/// caps for the mode (`service/RTC/StandardVideoQualitySettings.ts`: 1 Mbps at 720p, 300 kbps at
/// 360p, 100 kbps at 180p); the split between layers is roughly what libaom's SVC rate allocation
/// gives (the higher layer the larger share).
pub fn layer_bitrate(n: u8, s: u8) -> u32 {
    match (n, s) {
        (3, 0) => 150_000,
        (3, 1) => 300_000,
        (3, _) => 550_000,
        (2, 0) => 100_000,
        (2, _) => 200_000,
        _ => 100_000,
    }
}

/// The spatial layers lib-jitsi-meet asks Chromium for when the bridge's `SenderSourceConstraints`
/// say `max_height` (negative: no limit; 0: the encoding is switched off).
pub fn spatial_layers_for(max_height: i32) -> u8 {
    match max_height {
        ..0 | 720.. => 3,
        360.. => 2,
        0 => 0,
        _ => 1,
    }
}

/// Which of a layer's templates a frame uses, by its position after the keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Key,
    T0,
    T1,
    /// T2 right after a T0 frame.
    T2AfterT0,
    /// T2 right after a T1 frame.
    T2AfterT1,
}

impl FrameKind {
    /// The kind of the frames `since_key` temporal units after the keyframe (pattern 0-2-1-2).
    pub fn at(since_key: u64) -> FrameKind {
        match (since_key, since_key % 4) {
            (0, _) => FrameKind::Key,
            (_, 0) => FrameKind::T0,
            (_, 1) => FrameKind::T2AfterT0,
            (_, 2) => FrameKind::T1,
            _ => FrameKind::T2AfterT1,
        }
    }

    pub fn temporal(self) -> u8 {
        match self {
            FrameKind::Key | FrameKind::T0 => 0,
            FrameKind::T1 => 1,
            FrameKind::T2AfterT0 | FrameKind::T2AfterT1 => 2,
        }
    }

    fn index(self) -> u8 {
        match self {
            FrameKind::Key => 0,
            FrameKind::T0 => 1,
            FrameKind::T1 => 2,
            FrameKind::T2AfterT0 => 3,
            FrameKind::T2AfterT1 => 4,
        }
    }
}

/// DTI symbols of a frame of spatial layer `s` of `kind`, over `n` spatial layers × 3 temporal.
fn dtis(n: u8, s: u8, kind: FrameKind) -> String {
    (0..n)
        .flat_map(|ds| (0..TEMPORAL_LAYERS).map(move |dt| (ds, dt)))
        .map(|(ds, dt)| match kind {
            // A keyframe starts every decode target of its layer and above (inter-layer prediction
            // from the lower keyframes).
            FrameKind::Key if ds >= s => 'S',
            FrameKind::Key => '-',
            _ if ds != s => '-',
            FrameKind::T0 => 'S',
            FrameKind::T1 => match dt {
                0 => '-',
                1 => 'D',
                _ => 'S',
            },
            FrameKind::T2AfterT0 | FrameKind::T2AfterT1 => {
                if dt == 2 {
                    'D'
                } else {
                    '-'
                }
            }
        })
        .collect()
}

/// The template of spatial layer `s`, `kind`, with `n` spatial layers: DTIs, frame diffs, chain
/// diffs (chain `c` protects spatial layer `c`'s decode targets; frames are numbered S0, S1, S2 in
/// each temporal unit).
fn template(n: u8, s: u8, kind: FrameKind) -> FrameDeps {
    let n16 = u16::from(n);
    let fdiffs: &[u16] = match kind {
        FrameKind::Key if s == 0 => &[],
        FrameKind::Key => &[1],
        FrameKind::T0 => &[4 * n16],
        FrameKind::T1 => &[2 * n16],
        FrameKind::T2AfterT0 | FrameKind::T2AfterT1 => &[n16],
    };
    // Distance back to the last frame of each chain: the keyframe's layers (or the last T0 of
    // each layer) in this or an earlier temporal unit.
    let back_units: u8 = match kind {
        FrameKind::Key => 0,
        FrameKind::T0 => 4,
        FrameKind::T1 => 2,
        FrameKind::T2AfterT0 => 1,
        FrameKind::T2AfterT1 => 3,
    };
    let chains: Vec<u8> = (0..n)
        .map(|c| {
            if kind == FrameKind::Key {
                match s {
                    0 => 0,
                    _ if c < s => s - c,
                    _ => 1,
                }
            } else if kind == FrameKind::T0 && c < s {
                // The lower layers' T0 frames of this temporal unit.
                s - c
            } else {
                (back_units * n + s).saturating_sub(c)
            }
        })
        .collect();
    FrameDeps::new(s, kind.temporal(), &dtis(n, s, kind), fdiffs, &chains)
}

/// The key-SVC structure `LnT3_KEY` (`L1T3` for one layer) with render resolutions.
pub fn ksvc_structure(n: u8, template_id_offset: u8) -> Structure {
    let n = n.clamp(1, MAX_SPATIAL_LAYERS);
    let kinds = [
        FrameKind::Key,
        FrameKind::T0,
        FrameKind::T1,
        FrameKind::T2AfterT0,
        FrameKind::T2AfterT1,
    ];
    let templates: Vec<FrameDeps> = (0..n)
        .flat_map(|s| kinds.iter().map(move |&k| template(n, s, k)))
        .collect();
    let protected_by: Vec<u8> = (0..n)
        .flat_map(|s| std::iter::repeat_n(s, usize::from(TEMPORAL_LAYERS)))
        .collect();
    let resolutions: Vec<Resolution> = (0..n).map(layer_resolution).collect();
    Structure::new(
        template_id_offset,
        n * TEMPORAL_LAYERS,
        &templates,
        &protected_by,
        Some(&resolutions),
    )
}

/// One frame of a temporal unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcFrame {
    pub spatial: u8,
    pub temporal: u8,
    pub kind: FrameKind,
    pub frame_number: u16,
    /// `frame_dependency_template_id` (offset included).
    pub template_id: u8,
}

/// The frames of one temporal unit, lowest spatial layer first.
#[derive(Debug, Clone, Copy)]
pub struct TemporalUnit {
    frames: [SvcFrame; MAX_SPATIAL_LAYERS as usize],
    count: usize,
}

impl TemporalUnit {
    pub fn frames(&self) -> &[SvcFrame] {
        &self.frames[..self.count]
    }
}

/// The frame plan of a K-SVC encoder.
#[derive(Debug, Clone)]
pub struct KsvcEncoder {
    structure: Structure,
    spatial: u8,
    frame_number: u16,
    since_key: u64,
    keyframe_pending: bool,
}

impl KsvcEncoder {
    /// `spatial` layers (0: not sending); the first frame number is `first_frame_number + 1`.
    pub fn new(spatial: u8, first_frame_number: u16) -> Self {
        let spatial = spatial.min(MAX_SPATIAL_LAYERS);
        KsvcEncoder {
            structure: ksvc_structure(spatial.max(1), 0),
            spatial,
            frame_number: first_frame_number,
            since_key: 0,
            keyframe_pending: true,
        }
    }

    /// Active spatial layers (0: not sending).
    pub fn spatial_layers(&self) -> u8 {
        self.spatial
    }

    pub fn structure(&self) -> &Structure {
        &self.structure
    }

    /// Reconfigures to `n` spatial layers: a new structure (its template ids follow the previous
    /// structure's, as libwebrtc moves `template_id_offset`) from the next keyframe. True if it
    /// changed.
    pub fn set_spatial_layers(&mut self, n: u8) -> bool {
        let n = n.min(MAX_SPATIAL_LAYERS);
        if n == self.spatial {
            return false;
        }
        self.spatial = n;
        if n > 0 {
            let offset = (self.structure.template_id_offset + self.structure.template_count) % 64;
            self.structure = ksvc_structure(n, offset);
            self.keyframe_pending = true;
        }
        true
    }

    /// PLI / FIR: the next temporal unit starts with a keyframe.
    pub fn request_keyframe(&mut self) -> bool {
        let was = self.keyframe_pending;
        self.keyframe_pending = true;
        !was
    }

    pub fn keyframe_pending(&self) -> bool {
        self.keyframe_pending
    }

    /// The frames of the next temporal unit, lowest spatial layer first (none while off).
    pub fn next_temporal_unit(&mut self) -> TemporalUnit {
        let mut unit = TemporalUnit {
            frames: [SvcFrame {
                spatial: 0,
                temporal: 0,
                kind: FrameKind::Key,
                frame_number: 0,
                template_id: 0,
            }; MAX_SPATIAL_LAYERS as usize],
            count: 0,
        };
        if self.spatial == 0 {
            return unit;
        }
        if std::mem::take(&mut self.keyframe_pending) {
            self.since_key = 0;
        } else {
            self.since_key += 1;
        }
        let kind = FrameKind::at(self.since_key);
        for s in 0..self.spatial {
            self.frame_number = self.frame_number.wrapping_add(1);
            let index = s * TEMPLATES_PER_LAYER + kind.index();
            unit.frames[usize::from(s)] = SvcFrame {
                spatial: s,
                temporal: kind.temporal(),
                kind,
                frame_number: self.frame_number,
                template_id: (self.structure.template_id_offset + index) % 64,
            };
            unit.count += 1;
        }
        unit
    }

    /// Writes the descriptor of one packet of `frame` into `out` (the first packet of a keyframe's
    /// lowest layer carries the structure); returns its length.
    pub fn write_descriptor(
        &self,
        frame: &SvcFrame,
        first_packet: bool,
        last_packet: bool,
        out: &mut [u8],
    ) -> Result<usize, DdError> {
        let attach = frame.kind == FrameKind::Key && frame.spatial == 0 && first_packet;
        descriptor::write(
            &Fields {
                structure: Some(&self.structure),
                attach_structure: attach.then_some(self.structure.template_id_offset),
                ..Fields::mandatory(
                    first_packet,
                    last_packet,
                    frame.template_id,
                    frame.frame_number,
                )
            },
            out,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::sfu::av1::DdSource;
    use bridge::sfu::av1::descriptor::MAX_LEN;
    use std::collections::{BTreeMap, HashMap};

    /// The first descriptor of the bridge's capture of Chromium 156 sending `L3T3_KEY`.
    fn chrome_keyframe_descriptor() -> Vec<u8> {
        let text = include_str!("../../bridge/src/sfu/testdata/chrome156_av1_l3t3_key.txt");
        let line = text
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        let hex = line.split(' ').nth(3).unwrap();
        (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn l3t3_key_is_chromiums_structure() {
        let mut src = DdSource::new();
        src.parse(&chrome_keyframe_descriptor()).unwrap();
        let chrome = src.current().unwrap();
        let ours = ksvc_structure(3, chrome.template_id_offset);
        assert_eq!(ours.templates(), chrome.templates());
        assert_eq!(&ours, chrome);
    }

    /// Runs an encoder through the bridge's parser: every descriptor parses, frames resolve to the
    /// planned layer, every frame's references were sent before it, chain diffs point at the
    /// previous frame of each chain, and the decode targets contain the layers they should.
    fn check_stream(enc: &mut KsvcEncoder, units: usize, reconfigure: &[(usize, u8)]) -> usize {
        let mut src = DdSource::new();
        let mut out = [0u8; MAX_LEN];
        let mut sent: HashMap<u64, (u8, u8)> = HashMap::new();
        // Per chain: the frame index of its last frame.
        let mut chain_last: BTreeMap<usize, u64> = BTreeMap::new();
        let mut keyframes = 0;
        for tu in 0..units {
            if let Some(&(_, n)) = reconfigure.iter().find(|r| r.0 == tu) {
                enc.set_spatial_layers(n);
                chain_last.clear();
            }
            let unit = enc.next_temporal_unit();
            for &f in unit.frames() {
                // Two packets per frame.
                for k in 0..2 {
                    let n = enc.write_descriptor(&f, k == 0, k == 1, &mut out).unwrap();
                    let info = src.parse(&out[..n]).unwrap();
                    let d = info.descriptor;
                    assert_eq!((d.frame.spatial, d.frame.temporal), (f.spatial, f.temporal));
                    assert_eq!(d.frame_number, f.frame_number);
                    if k > 0 {
                        assert_eq!(n, 3, "continuation packets carry the mandatory fields only");
                        continue;
                    }
                    let s = src.current().unwrap().clone();
                    assert_eq!(s, *enc.structure());
                    let idx = info.frame_index;
                    if d.structure_attached {
                        keyframes += 1;
                    }
                    for &fd in d.frame.fdiffs() {
                        let r = sent.get(&(idx - u64::from(fd)));
                        assert!(r.is_some(), "TU {tu}: frame {idx} refers to {fd} back");
                    }
                    for c in 0..usize::from(s.chain_count) {
                        let diff = d.frame.chain_fdiffs[c];
                        match chain_last.get(&c) {
                            Some(&last) => assert_eq!(
                                u64::from(diff),
                                idx - last,
                                "TU {tu} S{}T{} chain {c}",
                                f.spatial,
                                f.temporal
                            ),
                            None => {
                                assert!(f.kind == FrameKind::Key, "a chain starts at a keyframe")
                            }
                        }
                    }
                    for c in 0..usize::from(s.chain_count) {
                        if s.part_of_chain(&d.frame, c, s.all_decode_targets()) {
                            chain_last.insert(c, idx);
                        }
                    }
                    sent.insert(idx, (f.spatial, f.temporal));
                }
            }
        }
        keyframes
    }

    #[test]
    fn every_mode_parses_in_the_bridge_with_consistent_chains_and_references() {
        for n in 1..=3u8 {
            let mut enc = KsvcEncoder::new(n, 65_500); // frame numbers wrap
            assert_eq!(check_stream(&mut enc, 40, &[]), 1);
            let s = enc.structure();
            assert_eq!(s.decode_target_count, 3 * n);
            assert_eq!(s.chain_count, n);
            for dt in 0..usize::from(3 * n) {
                assert_eq!(s.layer_of(dt), ((dt / 3) as u8, (dt % 3) as u8));
            }
            // K-SVC: the top layer's decode targets contain only the top layer's.
            let top = usize::from(3 * n - 1);
            assert_eq!(s.contained_in(top).count_ones(), 3);
            let res = s.resolution(n - 1).unwrap();
            assert_eq!((res.width, res.height), (320 << (n - 1), 180 << (n - 1)));
        }
    }

    #[test]
    fn sender_constraints_change_the_mode_with_a_new_structure_at_a_keyframe() {
        let mut enc = KsvcEncoder::new(1, 10);
        let keyframes = check_stream(&mut enc, 60, &[(20, 3), (40, 2)]);
        assert_eq!(keyframes, 3);
        // Template ids of consecutive structures do not overlap: 5 after L1T3, 20 after L3T3.
        assert_eq!(enc.structure().template_id_offset, 20);
        assert_eq!(spatial_layers_for(-1), 3);
        assert_eq!(spatial_layers_for(720), 3);
        assert_eq!(spatial_layers_for(360), 2);
        assert_eq!(spatial_layers_for(180), 1);
        assert_eq!(spatial_layers_for(0), 0);
        assert!(enc.set_spatial_layers(0));
        assert!(enc.next_temporal_unit().frames().is_empty());
        assert_eq!(enc.spatial_layers(), 0);
    }

    #[test]
    fn bitrates_follow_lib_jitsi_meets_caps() {
        let total = |n: u8| (0..n).map(|s| layer_bitrate(n, s)).sum::<u32>();
        assert_eq!(total(3), 1_000_000);
        assert_eq!(total(2), 300_000);
        assert_eq!(total(1), 100_000);
    }
}
