//! The layers of a video source as the bridge measures them: per encoding (simulcast stream) a
//! height, and per temporal layer a bitrate measured over a sliding window (1 s in 20 ms buckets, as
//! JVB's GoogleCc2 configuration). A layer's bitrate includes its dependencies (the lower temporal
//! layers of the same encoding); a layer is *active* when that bitrate is above zero.
//!
//! Layer index as JVB: `(encoding << 6) | (spatial << 3) | temporal` (spatial is always 0 here: VP8
//! simulcast has one spatial layer per encoding).
//!
//! Heights start at the nominal 180/360/720 (doubling per encoding) and are replaced by what the
//! encoding's keyframes say; frame rates are nominal (7.5/15/30 for temporal layers 0/1/2).

/// Temporal layers assumed per encoding (JVB assumes 3: over-estimating is safe).
pub const TEMPORAL_LAYERS: usize = 3;
const BUCKET_MS: u64 = 20;
const BUCKETS: usize = 50;
/// The measurement window.
pub const WINDOW_MS: u64 = BUCKET_MS * BUCKETS as u64;
/// Height of the lowest simulcast encoding until a keyframe says otherwise.
pub const BASE_HEIGHT: i32 = 180;

/// One layer of a source as measured now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerInfo {
    pub encoding: u8,
    pub temporal: u8,
    pub height: i32,
    pub fps: f32,
    /// Measured, including the lower temporal layers of the same encoding.
    pub bitrate_bps: u64,
}

impl LayerInfo {
    /// JVB layer index.
    pub fn index(&self) -> u16 {
        layer_index(self.encoding, self.temporal)
    }
}

/// JVB layer index of `(encoding, temporal)`.
#[inline]
pub fn layer_index(encoding: u8, temporal: u8) -> u16 {
    (u16::from(encoding) << 6) | u16::from(temporal & 7)
}

/// Nominal frame rate of temporal layer `t` of a 3-layer stream at 30 fps.
pub fn nominal_fps(t: u8) -> f32 {
    30.0 / (1u32 << (TEMPORAL_LAYERS as u32 - 1 - u32::from(t).min(2))) as f32
}

/// What a browser typically spends on a VP8 layer (libwebrtc's simulcast targets), by the
/// encoding's height: up to that height, the rate; above the last, the final rate.
const VP8_RATES: ([(i32, u64); 4], u64) = (
    [
        (180, 150_000),
        (360, 500_000),
        (540, 1_000_000),
        (720, 1_500_000),
    ],
    2_500_000,
);

/// What a current lib-jitsi-meet spends on a whole SVC stream (AV1 / VP9 `L3T3_KEY`, `L2T3_KEY`,
/// `L1T3`) up to the spatial layer of a height: the client's per-level cap
/// (lib-jitsi-meet `service/RTC/StandardVideoQualitySettings.ts`, AV1: low 100 kbps, standard
/// 300 kbps, high 1 Mbps, fullHd 2 Mbps) — far below VP8 simulcast's per-encoding rates, so a
/// spatial layer that just started is not priced as a VP8 encoding.
const SVC_RATES: ([(i32, u64); 4], u64) = (
    [
        (270, 100_000),
        (540, 300_000),
        (720, 1_000_000),
        (1080, 2_000_000),
    ],
    4_000_000,
);

/// The nominal bitrate of a layer of `height` up to temporal layer `t` (temporal layers take
/// 40/20/40 % of the rate), from the VP8 simulcast table or, for an SVC stream's spatial layers,
/// the SVC one.
pub fn nominal_bitrate(height: i32, t: u8, svc: bool) -> u64 {
    let (steps, above) = if svc { SVC_RATES } else { VP8_RATES };
    let full = steps
        .iter()
        .find(|(h, _)| height <= *h)
        .map_or(above, |(_, rate)| *rate);
    full * [40, 60, 100][usize::from(t.min(2))] / 100
}

/// Bytes per time over a sliding window of fixed buckets. No allocation; `add` is O(1) amortised.
#[derive(Debug, Clone)]
pub struct RateTracker {
    buckets: [u32; BUCKETS],
    /// Absolute bucket number (`ms / BUCKET_MS`) of the newest bucket.
    head: u64,
    total: u64,
}

impl Default for RateTracker {
    fn default() -> Self {
        RateTracker {
            buckets: [0; BUCKETS],
            head: 0,
            total: 0,
        }
    }
}

impl RateTracker {
    fn advance(&mut self, slot: u64) {
        if slot <= self.head {
            return;
        }
        let n = (slot - self.head).min(BUCKETS as u64);
        for k in 1..=n {
            let i = ((self.head + k) % BUCKETS as u64) as usize;
            self.total -= u64::from(self.buckets[i]);
            self.buckets[i] = 0;
        }
        self.head = slot;
    }

    pub fn add(&mut self, now_ms: u64, bytes: u32) {
        let slot = now_ms / BUCKET_MS;
        self.advance(slot);
        if slot + (BUCKETS as u64) <= self.head {
            return; // older than the window
        }
        let i = (slot % BUCKETS as u64) as usize;
        self.buckets[i] = self.buckets[i].saturating_add(bytes);
        self.total += u64::from(bytes);
    }

    /// Bytes within the window ending at `now_ms` (read-only).
    pub fn bytes(&self, now_ms: u64) -> u64 {
        let now_slot = now_ms / BUCKET_MS;
        let age = now_slot.saturating_sub(self.head);
        if age >= BUCKETS as u64 {
            return 0;
        }
        if age == 0 {
            return self.total;
        }
        // Buckets that fell out of the window since the last `add` are still in `total`.
        let b = BUCKETS as u64;
        let mut t = self.total;
        for k in (b - age)..b {
            t -= u64::from(self.buckets[((self.head + b - k) % b) as usize]);
        }
        t
    }

    /// Bits per second over the window.
    pub fn bps(&self, now_ms: u64) -> u64 {
        self.bytes(now_ms) * 8 * 1000 / WINDOW_MS
    }
}

/// One simulcast encoding's measured layers.
#[derive(Debug, Clone)]
pub struct EncodingLayers {
    pub height: i32,
    /// `height` came from a keyframe.
    pub height_learned: bool,
    rates: [RateTracker; TEMPORAL_LAYERS],
    last_packet_ms: Option<u64>,
    /// When the encoding (re)started: until a full window has passed, its rate is estimated
    /// conservatively.
    started_ms: u64,
}

/// All encodings of a video source.
#[derive(Debug, Clone)]
pub struct SourceLayers {
    pub encodings: Vec<EncodingLayers>,
    /// The encodings are an SVC stream's spatial layers (`MediaSource::measure`): a layer not yet
    /// measured is priced with the SVC table of [`nominal_bitrate`].
    pub svc: bool,
}

impl SourceLayers {
    pub fn new(encodings: usize) -> Self {
        let mut l = SourceLayers {
            encodings: Vec::new(),
            svc: false,
        };
        l.set_encoding_count(encodings);
        l
    }

    /// Grows or shrinks to `n` encodings (an SVC stream measures each spatial layer as one);
    /// true if the count changed.
    pub fn set_encoding_count(&mut self, n: usize) -> bool {
        let before = self.encodings.len();
        self.encodings.truncate(n);
        for e in before..n {
            self.encodings.push(EncodingLayers {
                height: BASE_HEIGHT << e.min(8),
                height_learned: false,
                rates: Default::default(),
                last_packet_ms: None,
                started_ms: 0,
            });
        }
        before != n
    }

    /// Accounts a packet; returns true if its encoding had carried nothing within the window (an
    /// encoding just (re)started: the allocation should look again).
    #[inline]
    pub fn on_packet(&mut self, now_ms: u64, encoding: u8, tid: u8, bytes: usize) -> bool {
        let Some(e) = self.encodings.get_mut(usize::from(encoding)) else {
            return false;
        };
        let t = usize::from(tid).min(TEMPORAL_LAYERS - 1);
        let was_idle = e
            .last_packet_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= WINDOW_MS);
        if was_idle {
            e.started_ms = now_ms;
        }
        e.last_packet_ms = Some(now_ms);
        e.rates[t].add(now_ms, bytes.min(u32::MAX as usize) as u32);
        was_idle
    }

    /// Records a height from a keyframe; returns true if it changed.
    pub fn set_height(&mut self, encoding: u8, height: i32) -> bool {
        let Some(e) = self.encodings.get_mut(usize::from(encoding)) else {
            return false;
        };
        let changed = e.height != height;
        e.height = height;
        e.height_learned = true;
        changed
    }

    /// Bitrate of `(encoding, temporal)` including the lower temporal layers.
    pub fn bitrate(&self, now_ms: u64, encoding: u8, temporal: u8) -> u64 {
        self.encodings.get(usize::from(encoding)).map_or(0, |e| {
            e.rates[..=usize::from(temporal).min(TEMPORAL_LAYERS - 1)]
                .iter()
                .map(|r| r.bps(now_ms))
                .sum()
        })
    }

    /// Bit `e * 3 + t` set for every active layer.
    pub fn active_mask(&self, now_ms: u64) -> u64 {
        let mut m = 0u64;
        for (e, enc) in self.encodings.iter().enumerate().take(21) {
            let mut acc = 0;
            for (t, r) in enc.rates.iter().enumerate() {
                acc += r.bytes(now_ms);
                if acc > 0 {
                    m |= 1 << (e * TEMPORAL_LAYERS + t);
                }
            }
        }
        m
    }

    /// Appends every layer (encoding-major, temporal-minor: JVB's quality order) with its bitrate.
    /// Before anything was measured (a source that just appeared) the bitrates are the nominal
    /// ones ([`nominal_bitrate`]), so the first allocation does not hand a receiver every layer
    /// "for free" and overload its link while the real rates are still unknown.
    pub fn snapshot(&self, now_ms: u64, out: &mut Vec<LayerInfo>) {
        let nothing_measured = self
            .encodings
            .iter()
            .all(|e| e.rates.iter().all(|r| r.bytes(now_ms) == 0));
        for (e, enc) in self.encodings.iter().enumerate() {
            // An encoding that started less than a window ago cannot be measured yet: its window
            // is mostly empty and begins with a large keyframe (under- or over-estimated by far,
            // depending on how it is scaled). Its nominal rate stands in until a full window.
            let young =
                enc.last_packet_ms.is_some() && now_ms.saturating_sub(enc.started_ms) < WINDOW_MS;
            let mut acc = 0;
            for (t, r) in enc.rates.iter().enumerate() {
                acc += r.bps(now_ms);
                let bitrate_bps = if nothing_measured || young {
                    nominal_bitrate(enc.height, t as u8, self.svc)
                } else {
                    acc
                };
                out.push(LayerInfo {
                    encoding: e as u8,
                    temporal: t as u8,
                    height: enc.height,
                    fps: nominal_fps(t as u8),
                    bitrate_bps,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_a_sliding_window() {
        let mut r = RateTracker::default();
        // 125 bytes every 10 ms = 100 kbps.
        for ms in (0..3000).step_by(10) {
            r.add(ms, 125);
        }
        let bps = r.bps(2999);
        assert!((95_000..=105_000).contains(&bps), "{bps}");
        // Half a second later, about half of the window remains.
        let half = r.bps(3500);
        assert!((45_000..=55_000).contains(&half), "{half}");
        assert_eq!(r.bps(4100), 0);
        // After a long pause the tracker restarts cleanly.
        r.add(60_000, 1000);
        assert_eq!(r.bytes(60_000), 1000);
        assert_eq!(r.bytes(60_990), 1000);
        assert_eq!(r.bytes(61_000), 0);
    }

    #[test]
    fn read_only_view_matches_after_advance() {
        let mut a = RateTracker::default();
        for ms in (0..2000).step_by(7) {
            a.add(ms, (ms % 97) as u32);
        }
        for probe in [2000u64, 2100, 2500, 2980, 3000, 3200] {
            let mut b = a.clone();
            b.advance(probe / BUCKET_MS);
            assert_eq!(a.bytes(probe), b.total, "at {probe}");
        }
    }

    /// A spatial layer of an SVC stream that just started is priced at what the client spends on
    /// the whole SVC stream up to it (1 Mbps at 720p for AV1), not as a VP8 encoding (1.5 Mbps):
    /// a receiver with ~1.2 Mbps gets 720p at once instead of a window later.
    #[test]
    fn young_svc_layers_are_priced_as_svc() {
        let mut l = SourceLayers::new(3);
        let mut snap = Vec::new();
        l.snapshot(0, &mut snap);
        assert_eq!(snap[8].bitrate_bps, 1_500_000, "simulcast 720p");
        l.svc = true;
        snap.clear();
        l.snapshot(0, &mut snap);
        assert_eq!(
            snap.iter().map(|x| x.bitrate_bps).collect::<Vec<_>>(),
            vec![
                40_000, 60_000, 100_000, 120_000, 180_000, 300_000, 400_000, 600_000, 1_000_000
            ]
        );
    }

    #[test]
    fn layers_include_dependencies_and_learn_height() {
        let mut l = SourceLayers::new(3);
        assert_eq!(
            l.encodings.iter().map(|e| e.height).collect::<Vec<_>>(),
            vec![180, 360, 720]
        );
        assert!(l.on_packet(0, 1, 0, 100));
        assert!(!l.on_packet(5, 1, 2, 100));
        for ms in (0..1000).step_by(10) {
            l.on_packet(ms, 1, 0, 100); // 80 kbps
            l.on_packet(ms, 1, 2, 50); // 40 kbps
        }
        let t0 = l.bitrate(999, 1, 0);
        let t1 = l.bitrate(999, 1, 1);
        let t2 = l.bitrate(999, 1, 2);
        assert_eq!(t0, t1);
        assert!(t2 > t1 && t2 < t1 * 2, "{t0} {t2}");
        assert_eq!(l.active_mask(999), 0b111 << 3);
        // Less than a window old: the nominal rate (500 kbps at 360p).
        let mut snap = Vec::new();
        l.snapshot(999, &mut snap);
        assert_eq!(snap.len(), 9);
        assert_eq!(snap[5].bitrate_bps, 500_000);
        let mut snap = Vec::new();
        for ms in (1000..2000).step_by(10) {
            l.on_packet(ms, 1, 0, 100);
            l.on_packet(ms, 1, 2, 50);
        }
        l.snapshot(1999, &mut snap);
        assert_eq!(snap[5].bitrate_bps, l.bitrate(1999, 1, 2));
        assert!((115_000..=125_000).contains(&snap[5].bitrate_bps));
        assert_eq!(snap[5].fps, 30.0);
        // Encoding 0 never sent: measured zero, not nominal (something else was measured).
        assert_eq!(snap[2].bitrate_bps, 0);
        // Nothing measured at all: nominal rates.
        let mut fresh = Vec::new();
        SourceLayers::new(3).snapshot(0, &mut fresh);
        assert_eq!(fresh[2].bitrate_bps, 150_000);
        assert_eq!(fresh[6].bitrate_bps, 600_000);
        assert_eq!(snap[3].fps, 7.5);
        assert!(l.set_height(2, 540));
        assert!(!l.set_height(2, 540));
        assert_eq!(l.encodings[2].height, 540);
        assert_eq!(layer_index(2, 1), 129);
        // Unknown encodings are ignored.
        assert!(!l.on_packet(0, 9, 0, 1));
        // Idle for longer than the window: "became active" again.
        assert!(l.on_packet(5000, 1, 0, 10));
    }
}
