//! The result of a run: every participant's report, the server side, and a summary (join-time
//! percentiles, received tracks, loss, the bridge's cost per forwarded packet and per endpoint), as
//! JSON and as text.

use std::fmt::Write as _;

use serde::Serialize;

use crate::participant::ParticipantReport;
use crate::procstat::ServerReport;
use crate::receiver::Kind;

/// The scenario as run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScenarioSummary {
    pub conferences: usize,
    pub participants_per_conference: usize,
    pub senders_per_conference: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub simulcast: bool,
    pub join_rate: f64,
    /// From the first join to "everybody connected or failed".
    pub joins_settled_s: f64,
    pub window_s: f64,
}

/// Median, 90th percentile and maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

/// Nearest-rank percentiles of `values` (NaN-free; empty → zeros).
pub fn percentiles(mut values: Vec<f64>) -> Percentiles {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return Percentiles::default();
    }
    values.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let i = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
        values[i]
    };
    Percentiles {
        n: values.len(),
        median: median(&values),
        p90: rank(0.9),
        max: values[values.len() - 1],
    }
}

/// Median of sorted `v` (mean of the two middle values for even lengths).
fn median(v: &[f64]) -> f64 {
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Median of unsorted values (for combining runs).
pub fn median_of(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    median(&v)
}

/// Join times (ms from the conference request) over all participants.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinTimes {
    pub xmpp_login: Percentiles,
    pub conference_ready: Percentiles,
    pub muc_joined: Percentiles,
    pub session_initiate: Percentiles,
    pub ice_connected: Percentiles,
    pub dtls_connected: Percentiles,
    pub channel_open: Percentiles,
    pub first_media: Percentiles,
    pub all_media: Percentiles,
}

/// Received media over the window, all participants together.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MediaSummary {
    pub audio_tracks: usize,
    pub video_tracks: usize,
    pub received_pps: f64,
    pub received_mbps: f64,
    pub video_kbps_per_track: Percentiles,
    pub video_fps_per_track: Percentiles,
    pub loss_pct_overall: f64,
    pub loss_pct_per_track: Percentiles,
    pub tracks_over_1pct_loss: usize,
    /// Expected (sender, kind) pairs not received.
    pub missing: usize,
    /// Heights of the forwarded video (height → tracks).
    pub video_heights: std::collections::BTreeMap<String, usize>,
    pub sent_pps: f64,
}

/// The bridge's cost.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    pub bridge_cpu_pct: f64,
    pub bridge_rss_mb: f64,
    pub bridge_hwm_mb: f64,
    pub bridge_threads: u64,
    /// Bridge CPU time per packet it sent (forwarded RTP + its RTCP), µs.
    pub bridge_us_per_sent_packet: f64,
    /// Bridge CPU time per packet handled (received + sent), µs.
    pub bridge_us_per_packet: f64,
    /// % of one core per endpoint.
    pub bridge_cpu_pct_per_endpoint: f64,
    /// % of one core per forwarded video stream (receiver × sender).
    pub bridge_cpu_pct_per_video_stream: f64,
    /// Packets sent per second per fully busy core (extrapolated).
    pub bridge_egress_pps_per_core: f64,
    pub bridge_rss_mb_per_endpoint: f64,
    pub focus_cpu_pct: f64,
    pub focus_rss_mb: f64,
    pub prosody_cpu_pct: f64,
    pub prosody_rss_mb: f64,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_mb: f64,
}

/// The headline numbers of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub participants: usize,
    pub connected: usize,
    pub failed: usize,
    pub failures: Vec<String>,
    pub join_ms: JoinTimes,
    pub media: MediaSummary,
    pub costs: Costs,
}

/// Everything a run produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub scenario: ScenarioSummary,
    pub summary: Summary,
    pub server: ServerReport,
    pub participants: Vec<ParticipantReport>,
}

impl RunReport {
    pub fn new(
        scenario: ScenarioSummary,
        participants: Vec<ParticipantReport>,
        server: ServerReport,
    ) -> Self {
        let summary = summarize(&participants, &server);
        RunReport {
            scenario,
            summary,
            server,
            participants,
        }
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        human(self)
    }
}

fn join_times(ps: &[ParticipantReport]) -> JoinTimes {
    let p = |f: fn(&ParticipantReport) -> Option<f64>| percentiles(ps.iter().filter_map(f).collect());
    JoinTimes {
        xmpp_login: p(|r| r.timings.xmpp_login_ms),
        conference_ready: p(|r| r.timings.conference_ready_ms),
        muc_joined: p(|r| r.timings.muc_joined_ms),
        session_initiate: p(|r| r.timings.session_initiate_ms),
        ice_connected: p(|r| r.timings.ice_connected_ms),
        dtls_connected: p(|r| r.timings.dtls_connected_ms),
        channel_open: p(|r| r.timings.channel_open_ms),
        first_media: p(|r| r.timings.first_media_ms),
        all_media: p(|r| r.timings.all_media_ms),
    }
}

/// Summary of participants and server.
pub fn summarize(ps: &[ParticipantReport], server: &ServerReport) -> Summary {
    let mut media = MediaSummary::default();
    let (mut lost, mut expected) = (0u64, 0u64);
    let mut loss = Vec::new();
    let mut kbps = Vec::new();
    let mut fps = Vec::new();
    for p in ps {
        for t in p.tracks.iter().filter(|t| t.packets > 0) {
            match t.kind {
                Kind::Audio => media.audio_tracks += 1,
                Kind::Video => {
                    media.video_tracks += 1;
                    kbps.push(t.kbps);
                    fps.push(t.fps);
                    let h = t.height.map_or("unknown".into(), |h| format!("{h}p"));
                    *media.video_heights.entry(h).or_default() += 1;
                }
            }
            media.received_pps += t.pps;
            media.received_mbps += t.kbps / 1000.0;
            lost += t.lost;
            expected += t.expected;
            loss.push(t.loss_pct);
            if t.loss_pct > 1.0 {
                media.tracks_over_1pct_loss += 1;
            }
        }
        media.missing += p.missing.len();
        media.sent_pps += p.sent_pps;
    }
    media.loss_pct_overall = if expected > 0 {
        lost as f64 / expected as f64 * 100.0
    } else {
        0.0
    };
    media.loss_pct_per_track = percentiles(loss);
    media.video_kbps_per_track = percentiles(kbps);
    media.video_fps_per_track = percentiles(fps);

    let proc = |n: &str| server.processes.get(n).copied().unwrap_or_default();
    let bridge = proc("bridge");
    let mut costs = Costs {
        bridge_cpu_pct: bridge.cpu_pct,
        bridge_rss_mb: bridge.rss_max_mb,
        bridge_hwm_mb: bridge.hwm_mb,
        bridge_threads: bridge.threads,
        focus_cpu_pct: proc("focus").cpu_pct,
        focus_rss_mb: proc("focus").rss_max_mb,
        prosody_cpu_pct: proc("prosody").cpu_pct,
        prosody_rss_mb: proc("prosody").rss_max_mb,
        loadgen_cpu_pct: proc("loadtest").cpu_pct,
        loadgen_rss_mb: proc("loadtest").rss_max_mb,
        ..Costs::default()
    };
    if let Some(b) = &server.bridge {
        let cpu_s = bridge.cpu_pct / 100.0;
        if b.packets_sent_pps > 0.0 {
            costs.bridge_us_per_sent_packet = cpu_s / b.packets_sent_pps * 1e6;
            costs.bridge_egress_pps_per_core = if cpu_s > 0.0 {
                b.packets_sent_pps / cpu_s
            } else {
                0.0
            };
        }
        let handled = b.packets_sent_pps + b.packets_received_pps;
        if handled > 0.0 {
            costs.bridge_us_per_packet = cpu_s / handled * 1e6;
        }
        if b.endpoints > 0.0 {
            costs.bridge_cpu_pct_per_endpoint = bridge.cpu_pct / b.endpoints;
            costs.bridge_rss_mb_per_endpoint = bridge.rss_max_mb / b.endpoints;
        }
    }
    if media.video_tracks > 0 {
        costs.bridge_cpu_pct_per_video_stream = bridge.cpu_pct / media.video_tracks as f64;
    }
    let failures: Vec<String> = ps
        .iter()
        .flat_map(|p| p.failures.iter().map(move |f| format!("{}: {f}", p.endpoint)))
        .collect();
    Summary {
        participants: ps.len(),
        connected: ps.iter().filter(|p| p.connected).count(),
        failed: ps.iter().filter(|p| !p.failures.is_empty()).count(),
        failures,
        join_ms: join_times(ps),
        media,
        costs,
    }
}

fn pline(out: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        out,
        "  {name:<18} median {:>7.0}  p90 {:>7.0}  max {:>7.0}  (n={})",
        p.median, p.p90, p.max, p.n
    );
}

/// The text summary printed after a run.
pub fn human(r: &RunReport) -> String {
    let s = &r.summary;
    let sc = &r.scenario;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "scenario: {} conference(s) × {} participants ({} senders each), simulcast {}, window {:.1} s (joins settled after {:.1} s)",
        sc.conferences,
        sc.participants_per_conference,
        sc.senders_per_conference,
        sc.simulcast,
        sc.window_s,
        sc.joins_settled_s
    );
    let _ = writeln!(
        o,
        "participants: {} connected of {}, {} with failures",
        s.connected, s.participants, s.failed
    );
    for f in s.failures.iter().take(10) {
        let _ = writeln!(o, "  failure: {f}");
    }
    let _ = writeln!(o, "join times (ms; login from start, the rest from the conference request):");
    let j = &s.join_ms;
    pline(&mut o, "xmpp login", &j.xmpp_login);
    pline(&mut o, "conference ready", &j.conference_ready);
    pline(&mut o, "MUC joined", &j.muc_joined);
    pline(&mut o, "session-initiate", &j.session_initiate);
    pline(&mut o, "ICE connected", &j.ice_connected);
    pline(&mut o, "DTLS connected", &j.dtls_connected);
    pline(&mut o, "channel open", &j.channel_open);
    pline(&mut o, "first media", &j.first_media);
    pline(&mut o, "all senders' media", &j.all_media);
    let m = &s.media;
    let _ = writeln!(
        o,
        "media received: {} audio + {} video tracks, {:.0} pps, {:.1} Mbps; loss {:.3} % overall (per track median {:.3} %, max {:.3} %), {} tracks > 1 %, {} expected tracks missing",
        m.audio_tracks,
        m.video_tracks,
        m.received_pps,
        m.received_mbps,
        m.loss_pct_overall,
        m.loss_pct_per_track.median,
        m.loss_pct_per_track.max,
        m.tracks_over_1pct_loss,
        m.missing
    );
    let _ = writeln!(
        o,
        "video per track: median {:.0} kbps, {:.1} fps; forwarded heights {:?}",
        m.video_kbps_per_track.median, m.video_fps_per_track.median, m.video_heights
    );
    let c = &s.costs;
    let sv = &r.server;
    if let Some(b) = &sv.bridge {
        let _ = writeln!(
            o,
            "bridge stats: {:.0} endpoints, {:.0} pps in, {:.0} pps out, {:.1} / {:.1} Mbps, stress mean {:.3} max {:.3}",
            b.endpoints,
            b.packets_received_pps,
            b.packets_sent_pps,
            b.bytes_received_mbps,
            b.bytes_sent_mbps,
            b.stress_level_mean,
            b.stress_level_max
        );
    }
    let _ = writeln!(
        o,
        "bridge: {:.1} % CPU, RSS {:.1} MB (peak {:.1} MB), {} threads; {:.2} µs CPU per sent packet, {:.2} µs per handled packet, {:.2} % CPU per endpoint, {:.2} % per forwarded video stream, ≈{:.0} egress pps per core",
        c.bridge_cpu_pct,
        c.bridge_rss_mb,
        c.bridge_hwm_mb,
        c.bridge_threads,
        c.bridge_us_per_sent_packet,
        c.bridge_us_per_packet,
        c.bridge_cpu_pct_per_endpoint,
        c.bridge_cpu_pct_per_video_stream,
        c.bridge_egress_pps_per_core
    );
    let _ = writeln!(
        o,
        "focus: {:.1} % CPU, RSS {:.1} MB; prosody: {:.1} % CPU, RSS {:.1} MB; load generator: {:.1} % CPU, RSS {:.1} MB",
        c.focus_cpu_pct, c.focus_rss_mb, c.prosody_cpu_pct, c.prosody_rss_mb, c.loadgen_cpu_pct, c.loadgen_rss_mb
    );
    let _ = writeln!(
        o,
        "machine: {} CPUs, {:.1} % busy (steal {:.1} %), load1 {:.2}; UDP receive-buffer drops {}",
        sv.cpus, sv.machine_busy_pct, sv.machine_steal_pct, sv.load1_mean, sv.udp_rcvbuf_errors
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::participant::TrackReport;
    use crate::procstat::{BridgeStatsReport, ProcessReport};

    #[test]
    fn percentiles_are_nearest_rank_with_an_interpolated_median() {
        let p = percentiles((1..=10).map(f64::from).collect());
        assert_eq!(p.n, 10);
        assert_eq!(p.median, 5.5);
        assert_eq!(p.p90, 9.0);
        assert_eq!(p.max, 10.0);
        assert_eq!(percentiles(vec![]), Percentiles::default());
        assert_eq!(percentiles(vec![f64::NAN, 3.0]).median, 3.0);
        assert_eq!(median_of(vec![3.0, 1.0, 2.0]), 2.0);
    }

    #[test]
    fn costs_and_loss_come_out_of_the_parts() {
        let track = |kind, packets, expected, h| TrackReport {
            owner: "a".into(),
            kind,
            ssrc: 1,
            packets,
            bytes: packets * 100,
            kbps: 80.0,
            pps: packets as f64 / 10.0,
            expected,
            lost: expected - packets,
            loss_pct: (expected - packets) as f64 / expected as f64 * 100.0,
            fps: 30.0,
            keyframes: 1,
            height: h,
            jitter_ms: 0.0,
        };
        let p = ParticipantReport {
            connected: true,
            window_s: 10.0,
            tracks: vec![track(Kind::Audio, 500, 500, None), track(Kind::Video, 990, 1000, Some(180))],
            ..ParticipantReport::default()
        };
        let mut server = ServerReport {
            window_s: 10.0,
            bridge: Some(BridgeStatsReport {
                endpoints: 3.0,
                packets_sent_pps: 10_000.0,
                packets_received_pps: 5_000.0,
                ..BridgeStatsReport::default()
            }),
            ..ServerReport::default()
        };
        server.processes.insert(
            "bridge".into(),
            ProcessReport {
                cpu_pct: 50.0,
                rss_max_mb: 30.0,
                ..ProcessReport::default()
            },
        );
        let r = RunReport::new(ScenarioSummary::default(), vec![p], server);
        let s = &r.summary;
        assert_eq!((s.media.audio_tracks, s.media.video_tracks), (1, 1));
        assert!((s.media.loss_pct_overall - 10.0 / 1500.0 * 100.0).abs() < 1e-9);
        assert_eq!(s.media.tracks_over_1pct_loss, 0);
        assert_eq!(s.media.video_heights.get("180p"), Some(&1));
        assert!((s.costs.bridge_us_per_sent_packet - 50.0).abs() < 1e-9);
        assert!((s.costs.bridge_egress_pps_per_core - 20_000.0).abs() < 1e-9);
        assert!((s.costs.bridge_cpu_pct_per_endpoint - 50.0 / 3.0).abs() < 1e-9);
        assert!(r.text().contains("1 connected of 1"));
        assert!(serde_json::to_string(&r).unwrap().contains("\"summary\""));
    }
}
