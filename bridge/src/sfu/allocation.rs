//! Bandwidth allocation for one receiver: which layer of each video source it gets, as a pure function
//! of the inputs (JVB's `doc/allocation.md` and
//! `jvb/src/main/kotlin/org/jitsi/videobridge/cc/allocation/BandwidthAllocator.kt`).
//!
//! 1. **Prioritise**: sources arrive in conference speaker order; the receiver's on-stage sources,
//!    then its selected sources (each in the order given) move to the front; disabled sources
//!    (video type `none`) go last.
//! 2. **Last-N**: walking that order, once last-N sources with a non-zero constraint have been seen,
//!    every further source gets the constraint 0. The result ("effective constraints") is also what
//!    senders are told to encode (the maximum over all receivers).
//! 3. **Candidate layers** per source: for cameras, layers within the height constraint, but above
//!    the preferred height (360) only those at the preferred frame rate (30), inactive layers left
//!    out (unless nothing is active yet), and the lowest height always allowed (soft constraint);
//!    for screen shares, everything within the constraint, the highest preferred, and oversending
//!    allowed on stage.
//! 4. **Allocation loop**: until nothing changes, each source in order tries to `improve` by one
//!    layer if the remaining bandwidth allows; an on-stage source jumps greedily up to its preferred
//!    layer, and while it has not reached it, sources after it get nothing.
//!
//! Bitrates are the measured ones (including dependencies), so an encoding a sender stopped sending
//! is not allocated.
//!
//! Cost (`benches/benches/simulcast.rs`, release, medians): 6.5–7.3 µs for one receiver and 49
//! three-encoding sources; a 50-endpoint conference re-allocates everyone in about 315 µs.

use std::collections::HashMap;

use signaling::sources::VideoType;

pub use super::layers::LayerInfo;

/// A receiver's constraint for one source. `max_height`: < 0 unlimited, 0 off; `max_frame_rate`:
/// < 0 unlimited, 0 off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoConstraints {
    pub max_height: i32,
    pub max_frame_rate: f64,
}

impl VideoConstraints {
    pub const NOTHING: VideoConstraints = VideoConstraints {
        max_height: 0,
        max_frame_rate: -1.0,
    };
    pub const UNLIMITED: VideoConstraints = VideoConstraints {
        max_height: -1,
        max_frame_rate: -1.0,
    };

    pub fn max_height(h: i32) -> Self {
        VideoConstraints {
            max_height: h,
            max_frame_rate: -1.0,
        }
    }

    pub fn is_disabled(&self) -> bool {
        self.max_height == 0 || self.max_frame_rate == 0.0
    }

    pub fn height_limited(&self) -> bool {
        self.max_height >= 0
    }

    pub fn frame_rate_limited(&self) -> bool {
        self.max_frame_rate >= 0.0
    }
}

/// A video source offered to the receiver.
#[derive(Debug, Clone, Copy)]
pub struct SourceInput<'a> {
    /// The conference's source slot (opaque here, returned in the result).
    pub slot: u32,
    pub name: &'a str,
    /// Owner endpoint id (the 2021 dialect names sources by it).
    pub owner: &'a str,
    pub video_type: VideoType,
    /// Every layer, encoding-major then temporal.
    pub layers: &'a [LayerInfo],
}

/// The receiver's settings and bandwidth.
#[derive(Debug, Clone, Copy)]
pub struct ReceiverInput<'a> {
    /// Effective last-N (client value bounded by the bridge's limits), < 0 = unlimited.
    pub last_n: i32,
    pub on_stage: &'a [String],
    pub selected: &'a [String],
    pub default_constraints: VideoConstraints,
    /// By source name or (2021 dialect) by owner endpoint id.
    pub constraints: &'a HashMap<String, VideoConstraints>,
    /// Available bandwidth; `u64::MAX` when the bridge does not limit by bandwidth.
    pub bandwidth_bps: u64,
}

impl ReceiverInput<'_> {
    fn constraints_for(&self, s: &SourceInput<'_>) -> VideoConstraints {
        self.constraints
            .get(s.name)
            .or_else(|| self.constraints.get(s.owner))
            .copied()
            .unwrap_or(self.default_constraints)
    }

    fn is_on_stage(&self, s: &SourceInput<'_>) -> bool {
        self.on_stage.iter().any(|n| n == s.name || n == s.owner)
    }

    /// Position in on-stage ++ selected, if the source is there.
    fn selection_rank(&self, s: &SourceInput<'_>) -> Option<usize> {
        self.on_stage
            .iter()
            .chain(self.selected)
            .position(|n| n == s.name || n == s.owner)
    }
}

/// Tunables (JVB `videobridge.cc.*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AllocConfig {
    pub onstage_preferred_height: i32,
    pub onstage_preferred_fps: f64,
    pub allow_oversend_onstage: bool,
    pub max_oversend_bps: u64,
}

impl Default for AllocConfig {
    fn default() -> Self {
        AllocConfig {
            onstage_preferred_height: 360,
            onstage_preferred_fps: 30.0,
            allow_oversend_onstage: true,
            max_oversend_bps: 500_000,
        }
    }
}

/// The decision for one source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceAllocation {
    pub slot: u32,
    /// After last-N; what the sender is asked for.
    pub effective: VideoConstraints,
    pub on_stage: bool,
    /// The layer to forward, `None` = suspended.
    pub target: Option<LayerInfo>,
    /// The layer it would get with unlimited bandwidth.
    pub ideal: Option<LayerInfo>,
}

/// The result for one receiver; `sources` in priority order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Allocation {
    pub sources: Vec<SourceAllocation>,
    /// Sum of the target layers' bitrates.
    pub target_bps: u64,
    /// Sum of the ideal layers' bitrates.
    pub ideal_bps: u64,
    /// The targets exceed the bandwidth (only by the allowed oversend).
    pub oversending: bool,
}

impl Allocation {
    /// Forwarded sources in priority order.
    pub fn forwarded(&self) -> impl Iterator<Item = u32> + '_ {
        self.sources
            .iter()
            .filter(|s| s.target.is_some())
            .map(|s| s.slot)
    }

    pub fn get(&self, slot: u32) -> Option<&SourceAllocation> {
        self.sources.iter().find(|s| s.slot == slot)
    }

    /// Some forwarded source is below its ideal layer (probing could help).
    pub fn has_non_ideal_layer(&self) -> bool {
        self.sources
            .iter()
            .any(|s| s.ideal.is_some() && s.target.map(|t| t.index()) != s.ideal.map(|i| i.index()))
    }
}

/// Per-source working state of the allocation loop.
struct Single {
    /// Candidate layers, indices into the source's `layers`, lowest quality first.
    cand: std::ops::Range<usize>,
    preferred: isize,
    oversend: isize,
    target: isize,
    on_stage: bool,
}

/// Runs the allocation. `sources` must be in conference speaker order.
pub fn allocate(
    sources: &[SourceInput<'_>],
    r: &ReceiverInput<'_>,
    cfg: &AllocConfig,
) -> Allocation {
    // 1. Prioritise.
    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&i| {
        let s = &sources[i];
        let enabled = s.video_type != VideoType::None;
        match (enabled, r.selection_rank(s)) {
            (true, Some(rank)) => (0u8, rank),
            (true, None) => (1, 0),
            (false, _) => (2, 0),
        }
    }); // stable: speaker order kept within each class

    // 2. Effective constraints (last-N).
    let last_n = if r.last_n < 0 {
        usize::MAX
    } else {
        r.last_n as usize
    };
    let mut non_zero = 0usize;
    let effective: Vec<VideoConstraints> = order
        .iter()
        .map(|&i| {
            let s = &sources[i];
            if s.video_type == VideoType::None || non_zero >= last_n {
                VideoConstraints::NOTHING
            } else {
                let c = r.constraints_for(s);
                if !c.is_disabled() {
                    non_zero += 1;
                }
                c
            }
        })
        .collect();

    // 3. Candidate layers.
    let mut flat: Vec<usize> = Vec::new();
    let mut singles: Vec<Single> = Vec::with_capacity(order.len());
    for (k, &i) in order.iter().enumerate() {
        let s = &sources[i];
        let on_stage = r.is_on_stage(s);
        let start = flat.len();
        let (preferred, oversend) = select_layers(s, effective[k], on_stage, cfg, &mut flat);
        singles.push(Single {
            cand: start..flat.len(),
            preferred,
            oversend,
            target: -1,
            on_stage,
        });
    }

    // 4. Allocation loop.
    let bitrate = |k: usize, single: &Single, idx: isize| -> i64 {
        if idx < 0 {
            return 0;
        }
        let li = flat[single.cand.start + idx as usize];
        sources[order[k]].layers[li]
            .bitrate_bps
            .min(i64::MAX as u64 / 4) as i64
    };
    let mut remaining: i64 = r.bandwidth_bps.min(i64::MAX as u64 / 4) as i64;
    let mut old = remaining.wrapping_add(1);
    let mut oversending = false;
    while old != remaining {
        old = remaining;
        for k in 0..singles.len() {
            if effective[k].is_disabled() {
                continue;
            }
            let allow_oversend = k == 0;
            let single = &singles[k];
            let n = single.cand.len() as isize;
            if n == 0 {
                continue;
            }
            let initial = bitrate(k, single, single.target);
            let max_bps = remaining + initial;
            let mut t = single.target;
            if t == -1 && single.preferred > -1 && single.on_stage {
                for i in 0..n {
                    if i > single.preferred || max_bps < bitrate(k, single, i) {
                        break;
                    }
                    t = i;
                }
            } else if t + 1 < n && bitrate(k, single, t + 1) < max_bps {
                t += 1;
            }
            if t > -1 {
                // A higher layer that costs no more (e.g. no temporal scalability): take it.
                let mut i = n - 1;
                while i > t {
                    if bitrate(k, single, i) <= bitrate(k, single, t) {
                        t = i;
                    }
                    i -= 1;
                }
            }
            if allow_oversend && single.oversend >= 0 && t < single.oversend {
                let limit =
                    max_bps.saturating_add(cfg.max_oversend_bps.min(i64::MAX as u64 / 4) as i64);
                let mut i = single.oversend;
                while i > t {
                    if bitrate(k, single, i) <= limit {
                        t = i;
                    }
                    i -= 1;
                }
            }
            remaining -= bitrate(k, single, t) - initial;
            singles[k].target = t;
            if remaining < 0 {
                oversending = true;
            }
            let single = &singles[k];
            if single.on_stage && single.target < single.preferred {
                break;
            }
        }
    }

    let mut out = Allocation {
        sources: Vec::with_capacity(order.len()),
        oversending,
        ..Allocation::default()
    };
    for (k, single) in singles.iter().enumerate() {
        let s = &sources[order[k]];
        let layer = |idx: isize| {
            (idx >= 0 && (idx as usize) < single.cand.len())
                .then(|| s.layers[flat[single.cand.start + idx as usize]])
        };
        let target = layer(single.target);
        let ideal = layer(single.cand.len() as isize - 1);
        out.target_bps += target.map_or(0, |l| l.bitrate_bps);
        out.ideal_bps += ideal.map_or(0, |l| l.bitrate_bps);
        out.sources.push(SourceAllocation {
            slot: s.slot,
            effective: effective[k],
            on_stage: single.on_stage,
            target,
            ideal,
        });
    }
    out
}

/// Appends the candidate layers of `s` (indices into `s.layers`) to `flat`; returns the preferred
/// and oversend indices within them (-1 = none).
fn select_layers(
    s: &SourceInput<'_>,
    c: VideoConstraints,
    on_stage: bool,
    cfg: &AllocConfig,
    flat: &mut Vec<usize>,
) -> (isize, isize) {
    if c.is_disabled() || s.layers.is_empty() {
        return (-1, -1);
    }
    match s.video_type {
        VideoType::Camera => select_camera(s.layers, c, cfg, flat),
        VideoType::Desktop | VideoType::DesktopHighFps => {
            select_screenshare(s.layers, c, on_stage, cfg, flat)
        }
        VideoType::None => (-1, -1),
    }
}

fn select_camera(
    layers: &[LayerInfo],
    c: VideoConstraints,
    cfg: &AllocConfig,
    flat: &mut Vec<usize>,
) -> (isize, isize) {
    let start = flat.len();
    let min_height = layers.iter().map(|l| l.height).min().unwrap_or(0);
    let min_fps = layers.iter().map(|l| l.fps).fold(f32::MAX, f32::min);
    let max_fps = layers.iter().map(|l| l.fps).fold(0.0f32, f32::max);
    let no_active = layers.iter().all(|l| l.bitrate_bps == 0);
    // Above 180p (or unlimited) the on-stage preference applies: 360p, and at least 30 fps above it.
    let (pref_h, pref_fps) = if c.max_height > 180 || !c.height_limited() {
        (cfg.onstage_preferred_height, cfg.onstage_preferred_fps)
    } else {
        (-1, -1.0)
    };
    let eff_pref_fps = if max_fps > 0.0 {
        f64::from(max_fps).min(pref_fps)
    } else {
        pref_fps
    };
    for (i, l) in layers.iter().enumerate() {
        let below_preferred = l.height < pref_h;
        let within_height = l.height <= c.max_height || !c.height_limited();
        let enough_fps = l.fps < 0.0 || f64::from(l.fps) >= eff_pref_fps;
        // A frame-rate limit is honoured too (softly: the lowest frame rate stays available).
        let within_fps =
            !c.frame_rate_limited() || f64::from(l.fps) <= c.max_frame_rate || l.fps <= min_fps;
        if (below_preferred || (within_height && enough_fps) || l.height == min_height)
            && within_fps
            && (no_active || l.bitrate_bps > 0)
        {
            flat.push(i);
        }
    }
    let eff_pref_h = pref_h.max(min_height);
    let preferred = flat[start..]
        .iter()
        .rposition(|&i| layers[i].height <= eff_pref_h)
        .map_or(-1, |p| p as isize);
    (preferred, -1)
}

fn select_screenshare(
    layers: &[LayerInfo],
    c: VideoConstraints,
    on_stage: bool,
    cfg: &AllocConfig,
    flat: &mut Vec<usize>,
) -> (isize, isize) {
    let start = flat.len();
    let any_active = layers.iter().any(|l| l.bitrate_bps > 0);
    let active = |l: &LayerInfo| !any_active || l.bitrate_bps > 0;
    for (i, l) in layers.iter().enumerate() {
        if active(l) && (!c.height_limited() || l.height <= c.max_height) {
            flat.push(i);
        }
    }
    if flat.len() == start {
        // Nothing within the constraint: the lowest resolution (soft constraint).
        let Some(min_h) = layers.iter().filter(|l| active(l)).map(|l| l.height).min() else {
            return (-1, -1);
        };
        for (i, l) in layers.iter().enumerate() {
            if active(l) && l.height == min_h {
                flat.push(i);
            }
        }
    }
    let cand = &flat[start..];
    if cand.is_empty() {
        return (-1, -1);
    }
    let oversend = if on_stage && cfg.allow_oversend_onstage {
        let max_h = cand.iter().map(|&i| layers[i].height).max().unwrap_or(0);
        cand.iter()
            .enumerate()
            .filter(|(_, i)| layers[**i].height == max_h)
            .min_by_key(|(_, i)| layers[**i].bitrate_bps)
            .map_or(-1, |(p, _)| p as isize)
    } else {
        -1
    };
    (cand.len() as isize - 1, oversend)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chrome-like 3-encoding simulcast: 150/450/1500 kbps at 30 fps, temporal split 40/20/40 %.
    fn sim_layers(active_encodings: usize) -> Vec<LayerInfo> {
        let full = [150_000u64, 450_000, 1_500_000];
        let mut v = Vec::new();
        for (e, rate) in full.iter().enumerate() {
            for (t, frac) in [0.4f64, 0.6, 1.0].iter().enumerate() {
                v.push(LayerInfo {
                    encoding: e as u8,
                    temporal: t as u8,
                    height: 180 << e,
                    fps: 7.5 * (1 << t) as f32,
                    bitrate_bps: if e < active_encodings {
                        (*rate as f64 * frac) as u64
                    } else {
                        0
                    },
                });
            }
        }
        v
    }

    struct Conf {
        names: Vec<(String, String)>,
        layers: Vec<Vec<LayerInfo>>,
        types: Vec<VideoType>,
    }

    impl Conf {
        fn new(n: usize) -> Self {
            Conf {
                names: (0..n)
                    .map(|i| (format!("e{i}-v0"), format!("e{i}")))
                    .collect(),
                layers: (0..n).map(|_| sim_layers(3)).collect(),
                types: vec![VideoType::Camera; n],
            }
        }
        fn inputs(&self) -> Vec<SourceInput<'_>> {
            (0..self.names.len())
                .map(|i| SourceInput {
                    slot: i as u32,
                    name: &self.names[i].0,
                    owner: &self.names[i].1,
                    video_type: self.types[i],
                    layers: &self.layers[i],
                })
                .collect()
        }
    }

    fn recv<'a>(
        constraints: &'a HashMap<String, VideoConstraints>,
        on_stage: &'a [String],
        default_h: i32,
        bw: u64,
    ) -> ReceiverInput<'a> {
        ReceiverInput {
            last_n: -1,
            on_stage,
            selected: &[],
            default_constraints: VideoConstraints::max_height(default_h),
            constraints,
            bandwidth_bps: bw,
        }
    }

    fn targets(a: &Allocation) -> Vec<(u32, Option<(u8, u8)>)> {
        let mut v: Vec<_> = a
            .sources
            .iter()
            .map(|s| (s.slot, s.target.map(|l| (l.encoding, l.temporal))))
            .collect();
        v.sort_by_key(|x| x.0);
        v
    }

    #[test]
    fn stage_view_with_plenty_of_bandwidth() {
        let c = Conf::new(3);
        let mut cons = HashMap::new();
        cons.insert("e0-v0".to_string(), VideoConstraints::max_height(720));
        let stage = vec!["e0-v0".to_string()];
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &stage, 180, 5_000_000),
            &AllocConfig::default(),
        );
        assert_eq!(
            targets(&a),
            vec![(0, Some((2, 2))), (1, Some((0, 2))), (2, Some((0, 2)))]
        );
        assert_eq!(a.target_bps, 1_800_000);
        assert!(!a.oversending && !a.has_non_ideal_layer());
        assert_eq!(a.forwarded().collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn stage_view_low_bandwidth_starves_thumbnails_until_preferred() {
        let c = Conf::new(3);
        let mut cons = HashMap::new();
        cons.insert("e1-v0".to_string(), VideoConstraints::max_height(720));
        let stage = vec!["e1-v0".to_string()];
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &stage, 180, 300_000),
            &AllocConfig::default(),
        );
        // On-stage (moved first) gets 180p30; the thumbnails nothing: it has not reached 360p.
        assert_eq!(a.sources[0].slot, 1);
        assert_eq!(targets(&a), vec![(0, None), (1, Some((0, 2))), (2, None)]);
        assert!(a.has_non_ideal_layer());
        // At 800 kbps it reaches 360p30 (450 k) and the thumbnails share the rest step by step.
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &stage, 180, 800_000),
            &AllocConfig::default(),
        );
        assert_eq!(
            targets(&a),
            vec![(0, Some((0, 2))), (1, Some((1, 2))), (2, Some((0, 2)))]
        );
    }

    #[test]
    fn tile_view_and_single_receiver_ramps() {
        let c = Conf::new(1);
        let cons = HashMap::new();
        let on = |bw| {
            targets(&allocate(
                &c.inputs(),
                &recv(&cons, &[], 720, bw),
                &AllocConfig::default(),
            ))[0]
                .1
        };
        // 360p at 7.5/15 fps are not candidates (below the preferred 30 fps above 360p).
        assert_eq!(on(50_000), None);
        assert_eq!(on(100_000), Some((0, 1)));
        assert_eq!(on(300_000), Some((0, 2)));
        assert_eq!(on(600_000), Some((1, 2)));
        assert_eq!(on(1_400_000), Some((1, 2)));
        assert_eq!(on(3_000_000), Some((2, 2)));
        // Unlimited bandwidth, 180p constraint: the 180p layers only.
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &[], 180, u64::MAX),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((0, 2)));
        assert_eq!(a.sources[0].ideal.map(|l| l.index()), Some(2));
    }

    #[test]
    fn last_n_and_max_height_zero_give_effective_constraints() {
        let c = Conf::new(4);
        let mut cons = HashMap::new();
        cons.insert("e0".to_string(), VideoConstraints::max_height(0)); // 2021: by endpoint id
        let mut r = recv(&cons, &[], 180, u64::MAX);
        r.last_n = 2;
        let a = allocate(&c.inputs(), &r, &AllocConfig::default());
        // e0 is off (does not count towards last-N), e1 and e2 are in, e3 is past last-N.
        assert_eq!(
            targets(&a),
            vec![(0, None), (1, Some((0, 2))), (2, Some((0, 2))), (3, None)]
        );
        let eff: Vec<i32> = a.sources.iter().map(|s| s.effective.max_height).collect();
        assert_eq!(eff, vec![0, 180, 180, 0]);
        // Selected moves a source to the front, ahead of speaker order.
        let sel = vec!["e3-v0".to_string()];
        r.selected = &sel;
        let a = allocate(&c.inputs(), &r, &AllocConfig::default());
        assert_eq!(a.sources[0].slot, 3);
        assert_eq!(
            targets(&a),
            vec![(0, None), (1, Some((0, 2))), (2, None), (3, Some((0, 2)))]
        );
        // A disabled source goes last and is never forwarded.
        let mut c2 = Conf::new(2);
        c2.types[0] = VideoType::None;
        let a = allocate(
            &c2.inputs(),
            &recv(&cons, &[], 180, u64::MAX),
            &AllocConfig::default(),
        );
        assert_eq!(a.sources[1].slot, 0);
        assert_eq!(a.sources[1].target, None);
        assert_eq!(a.sources[1].effective, VideoConstraints::NOTHING);
    }

    #[test]
    fn inactive_encodings_are_skipped_and_soft_constraint_allows_lowest() {
        let mut c = Conf::new(1);
        c.layers[0] = sim_layers(1); // only 180p is being sent
        let cons = HashMap::new();
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &[], 720, u64::MAX),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((0, 2)));
        // Nothing measured yet: all layers are candidates (so forwarding can start).
        let mut c = Conf::new(1);
        c.layers[0] = sim_layers(0);
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &[], 180, u64::MAX),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((0, 2)));
        // A single 720p encoding and a 180p constraint: the lowest (only) height is allowed.
        let mut c = Conf::new(1);
        c.layers[0] = sim_layers(3)[6..].to_vec();
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &[], 180, u64::MAX),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((2, 2)));
    }

    #[test]
    fn frame_rate_limit_and_no_temporal_scalability() {
        let c = Conf::new(1);
        let mut cons = HashMap::new();
        cons.insert(
            "e0-v0".to_string(),
            VideoConstraints {
                max_height: 180,
                max_frame_rate: 15.0,
            },
        );
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &[], 180, u64::MAX),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((0, 1)));
        // Without temporal layers every TL has the same bitrate: the top one is taken.
        let mut c = Conf::new(1);
        for l in c.layers[0].iter_mut() {
            l.bitrate_bps = [150_000, 450_000, 1_500_000][usize::from(l.encoding)];
        }
        let a = allocate(
            &c.inputs(),
            &recv(&HashMap::new(), &[], 180, 1_000_000),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((0, 2)));
    }

    #[test]
    fn screenshare_on_stage_oversends() {
        let mut c = Conf::new(1);
        c.types[0] = VideoType::Desktop;
        // One 1080p encoding at 1.2 Mbps (low fps).
        c.layers[0] = vec![LayerInfo {
            encoding: 0,
            temporal: 0,
            height: 1080,
            fps: 5.0,
            bitrate_bps: 1_200_000,
        }];
        let stage = vec!["e0".to_string()];
        let cons = HashMap::new();
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &stage, -1, 800_000),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, Some((0, 0)));
        assert!(a.oversending);
        // Not on stage: no oversending.
        let a = allocate(
            &c.inputs(),
            &recv(&cons, &[], -1, 800_000),
            &AllocConfig::default(),
        );
        assert_eq!(targets(&a)[0].1, None);
    }
}
