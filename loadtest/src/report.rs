//! The result of a run: every participant's report, the server side, and a summary (join-time
//! percentiles, packets and bitrates, loss, the bridge's and the focus's CPU and memory, the
//! bridge's cost per forwarded packet and per endpoint), as JSON, as text and as Markdown.

use std::fmt::Write as _;

use serde::Serialize;

use crate::participant::ParticipantReport;
use crate::procstat::{ServerReport, TimelinePoint};
use crate::receiver::Kind;

/// The scenario as run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScenarioSummary {
    /// The SFU's process name: `bridge` (ours, with the focus and Prosody) or `janus`.
    pub sfu: String,
    pub conferences: usize,
    pub participants_per_conference: usize,
    pub senders_per_conference: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub simulcast: bool,
    /// The client imitated: `2021` or `current`.
    pub dialect: String,
    /// What the senders send: `vp8` (simulcast) or `av1` (SVC `L3T3_KEY`).
    pub video_codec: String,
    /// The participants asked for SSRC rewriting.
    pub ssrc_rewriting: bool,
    pub join_rate: f64,
    /// From the first join to "everybody connected or failed".
    pub joins_settled_s: f64,
    /// The measurement window, in seconds since the run started (the timeline's clock).
    pub window_start_s: f64,
    pub window_end_s: f64,
    pub window_s: f64,
}

/// Median, 90th and 95th percentiles and maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub n: usize,
    pub median: f64,
    pub p90: f64,
    pub p95: f64,
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
        p95: rank(0.95),
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

/// Join times over all participants (ms): `join` and `join_to_all_media` from the participant's
/// start, `xmpp_login` too, the other steps from the conference request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinTimes {
    /// Start → bridge channel open (XMPP login, conference request, MUC, Jingle, ICE, DTLS, SCTP).
    pub join: Percentiles,
    /// Start → audio and video from every other sender.
    pub join_to_all_media: Percentiles,
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
    /// RTP sent by all participants together.
    pub sent_pps: f64,
    pub sent_mbps: f64,
    /// Per participant (receivers and senders alike).
    pub received_pps_per_participant: Percentiles,
    pub received_kbps_per_participant: Percentiles,
    /// Per sending participant.
    pub sent_kbps_per_sender: Percentiles,
}

/// What the server side cost over the measurement window (CPU in % of one core, memory in MiB),
/// and the focus's CPU over the whole run (it works during joins, not in the window).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Costs {
    /// The SFU's process (`bridge` or `janus`) and its cost measured the same way for either:
    /// CPU from `/proc/<pid>/stat`, packets from the participants' own counters.
    pub sfu: String,
    pub sfu_cpu_cores: f64,
    pub sfu_rss_mib: f64,
    pub sfu_udp_drops: u64,
    /// SFU CPU time per RTP packet the participants received (forwarded media), µs.
    pub sfu_us_per_forwarded_packet: f64,
    /// SFU CPU time per RTP packet in (what the participants sent) or out (what they
    /// received), µs.
    pub sfu_us_per_packet_in_out: f64,
    /// Busy time of the SFU's CPUs (`/proc/stat`, `loadtest --split-netns`): the process plus the
    /// kernel's receive work for its datagrams that RPS runs there (which `/proc/<pid>/stat` may
    /// not charge to the process) — what an SFU machine would spend, as long as nothing else is
    /// pinned to those CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sfu_cpu_busy_cores: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sfu_cpu_busy_us_per_forwarded_packet: Option<f64>,
    pub bridge_cpu_pct: f64,
    /// `bridge_cpu_pct / 100`: cores busy.
    pub bridge_cpu_cores: f64,
    pub bridge_rss_mib: f64,
    pub bridge_hwm_mib: f64,
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
    pub bridge_rss_mib_per_endpoint: f64,
    pub focus_cpu_pct: f64,
    pub focus_rss_mib: f64,
    /// Whole run (joins and leaves included).
    pub focus_run_cpu_pct: f64,
    pub focus_run_cpu_seconds: f64,
    pub focus_run_rss_max_mib: f64,
    pub bridge_run_cpu_pct: f64,
    pub bridge_run_rss_max_mib: f64,
    pub prosody_cpu_pct: f64,
    pub prosody_rss_mib: f64,
    pub loadgen_cpu_pct: f64,
    pub loadgen_rss_mib: f64,
    /// Datagrams the kernel dropped in the window on the bridge's sockets (its receive buffer was
    /// full) and on the load generator's (participants too slow to read).
    pub bridge_udp_drops: u64,
    pub loadgen_udp_drops: u64,
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

    /// The report as a Markdown document.
    pub fn markdown(&self) -> String {
        markdown(self)
    }

    /// A failure of the run itself (a server process died, …).
    pub fn add_failure(&mut self, failure: String) {
        self.summary.failures.push(failure);
    }

    /// No participant failed, everybody connected, and nothing else went wrong.
    pub fn succeeded(&self) -> bool {
        self.summary.failures.is_empty()
            && self.summary.connected == self.summary.participants
            && self.summary.failed == 0
    }
}

fn join_times(ps: &[ParticipantReport]) -> JoinTimes {
    let p =
        |f: fn(&ParticipantReport) -> Option<f64>| percentiles(ps.iter().filter_map(f).collect());
    JoinTimes {
        join: p(|r| r.timings.join_ms),
        join_to_all_media: p(|r| r.timings.join_to_all_media_ms),
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
        media.sent_mbps += p.sent_kbps / 1000.0;
    }
    media.received_pps_per_participant = percentiles(ps.iter().map(|p| p.received_pps).collect());
    media.received_kbps_per_participant = percentiles(ps.iter().map(|p| p.received_kbps).collect());
    media.sent_kbps_per_sender = percentiles(
        ps.iter()
            .filter(|p| p.sender)
            .map(|p| p.sent_kbps)
            .collect(),
    );
    media.loss_pct_overall = if expected > 0 {
        lost as f64 / expected as f64 * 100.0
    } else {
        0.0
    };
    media.loss_pct_per_track = percentiles(loss);
    media.video_kbps_per_track = percentiles(kbps);
    media.video_fps_per_track = percentiles(fps);

    let proc = |n: &str| server.processes.get(n).copied().unwrap_or_default();
    let run = |n: &str| server.run_processes.get(n).copied().unwrap_or_default();
    let bridge = proc("bridge");
    let mut costs = Costs {
        bridge_cpu_pct: bridge.cpu_pct,
        bridge_cpu_cores: bridge.cpu_pct / 100.0,
        bridge_run_cpu_pct: run("bridge").cpu_pct,
        bridge_run_rss_max_mib: run("bridge").rss_max_mib,
        focus_run_cpu_pct: run("focus").cpu_pct,
        focus_run_cpu_seconds: run("focus").cpu_seconds,
        focus_run_rss_max_mib: run("focus").rss_max_mib,
        bridge_rss_mib: bridge.rss_max_mib,
        bridge_hwm_mib: bridge.hwm_mib,
        bridge_threads: bridge.threads,
        focus_cpu_pct: proc("focus").cpu_pct,
        focus_rss_mib: proc("focus").rss_max_mib,
        prosody_cpu_pct: proc("prosody").cpu_pct,
        prosody_rss_mib: proc("prosody").rss_max_mib,
        loadgen_cpu_pct: proc("loadtest").cpu_pct,
        loadgen_rss_mib: proc("loadtest").rss_max_mib,
        bridge_udp_drops: bridge.udp_drops,
        loadgen_udp_drops: proc("loadtest").udp_drops,
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
            costs.bridge_rss_mib_per_endpoint = bridge.rss_max_mib / b.endpoints;
        }
    }
    let sfu_name =
        if server.processes.contains_key("janus") || server.run_processes.contains_key("janus") {
            "janus"
        } else {
            "bridge"
        };
    let sfu = proc(sfu_name);
    costs.sfu = sfu_name.into();
    costs.sfu_cpu_cores = sfu.cpu_pct / 100.0;
    costs.sfu_rss_mib = sfu.rss_max_mib;
    costs.sfu_udp_drops = sfu.udp_drops;
    if media.received_pps > 0.0 {
        costs.sfu_us_per_forwarded_packet = costs.sfu_cpu_cores / media.received_pps * 1e6;
        costs.sfu_us_per_packet_in_out =
            costs.sfu_cpu_cores / (media.received_pps + media.sent_pps) * 1e6;
        costs.sfu_cpu_busy_us_per_forwarded_packet = server
            .sfu_cpus_busy_cores
            .map(|cores| cores / media.received_pps * 1e6);
    }
    costs.sfu_cpu_busy_cores = server.sfu_cpus_busy_cores;
    if media.video_tracks > 0 {
        costs.bridge_cpu_pct_per_video_stream = bridge.cpu_pct / media.video_tracks as f64;
    }
    let failures: Vec<String> = ps
        .iter()
        .flat_map(|p| {
            p.failures
                .iter()
                .map(move |f| format!("{}: {f}", p.endpoint))
        })
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
        "  {name:<18} median {:>7.0}  p95 {:>7.0}  max {:>7.0}  (n={})",
        p.median, p.p95, p.max, p.n
    );
}

/// The steps of a join, in order, with their names.
fn join_steps(j: &JoinTimes) -> [(&'static str, &Percentiles); 11] {
    [
        ("join (start → channel open)", &j.join),
        ("join → all senders' media", &j.join_to_all_media),
        ("XMPP login", &j.xmpp_login),
        ("conference ready", &j.conference_ready),
        ("MUC joined", &j.muc_joined),
        ("session-initiate", &j.session_initiate),
        ("ICE connected", &j.ice_connected),
        ("DTLS connected", &j.dtls_connected),
        ("channel open", &j.channel_open),
        ("first media", &j.first_media),
        ("all senders' media", &j.all_media),
    ]
}

/// Participants listed video by video in the reports (larger runs are summarized only).
const VIDEO_DETAIL_MAX_PARTICIPANTS: usize = 20;

/// One line per received video track of small runs: who receives whom, the codec, the height and
/// (AV1) spatial layer shown, frame rate and bitrate over the window.
pub fn video_lines(r: &RunReport) -> Vec<String> {
    if r.participants.len() > VIDEO_DETAIL_MAX_PARTICIPANTS {
        return Vec::new();
    }
    let mut out = Vec::new();
    for p in &r.participants {
        for t in p
            .tracks
            .iter()
            .filter(|t| t.kind == Kind::Video && t.packets > 0)
        {
            let layer = t.spatial.map(|s| format!(" (S{s})")).unwrap_or_default();
            let undecodable = if t.undecodable_frames > 0 {
                format!(", {} undecodable frames", t.undecodable_frames)
            } else {
                String::new()
            };
            out.push(format!(
                "{} ← {}: {} {}{layer}, {:.1} fps, {:.0} kbps, {} keyframes, {} PLIs{undecodable}",
                p.endpoint,
                t.owner,
                t.codec,
                t.height.map_or("?".to_owned(), |h| format!("{h}p")),
                t.fps,
                t.kbps,
                t.keyframes,
                t.plis
            ));
        }
    }
    out
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
        "client: lib-jitsi-meet {} dialect, video {}, SSRC rewriting {}",
        if sc.dialect.is_empty() {
            "2021"
        } else {
            &sc.dialect
        },
        if sc.video_codec.is_empty() {
            "vp8"
        } else {
            &sc.video_codec
        },
        if sc.ssrc_rewriting { "on" } else { "off" }
    );
    let _ = writeln!(
        o,
        "participants: {} connected of {}, {} with failures",
        s.connected, s.participants, s.failed
    );
    for f in s.failures.iter().take(10) {
        let _ = writeln!(o, "  failure: {f}");
    }
    let _ = writeln!(
        o,
        "join times (ms; the first three from the participant's start, the rest from the conference request):"
    );
    for (name, p) in join_steps(&s.join_ms) {
        pline(&mut o, name, p);
    }
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
    for line in video_lines(r) {
        let _ = writeln!(o, "  {line}");
    }
    let _ = writeln!(
        o,
        "sent: {:.0} pps, {:.1} Mbps in all (median {:.0} kbps per sender); received per participant: median {:.0} pps, {:.0} kbps",
        m.sent_pps,
        m.sent_mbps,
        m.sent_kbps_per_sender.median,
        m.received_pps_per_participant.median,
        m.received_kbps_per_participant.median
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
        "SFU ({}): {:.3} cores, RSS {:.1} MiB; {:.2} µs CPU per forwarded RTP packet, {:.2} µs per RTP packet in or out (packets counted by the participants)",
        c.sfu,
        c.sfu_cpu_cores,
        c.sfu_rss_mib,
        c.sfu_us_per_forwarded_packet,
        c.sfu_us_per_packet_in_out
    );
    if let (Some(cores), Some(us)) = (c.sfu_cpu_busy_cores, c.sfu_cpu_busy_us_per_forwarded_packet)
    {
        let _ = writeln!(
            o,
            "SFU CPUs busy (/proc/stat, the kernel's receive work included): {cores:.3} cores; {us:.2} µs per forwarded RTP packet"
        );
    }
    let _ = writeln!(
        o,
        "bridge: {:.1} % CPU, RSS {:.1} MiB (peak {:.1} MiB), {} threads; {:.2} µs CPU per sent packet, {:.2} µs per handled packet, {:.2} % CPU per endpoint, {:.2} % per forwarded video stream, ≈{:.0} egress pps per core",
        c.bridge_cpu_pct,
        c.bridge_rss_mib,
        c.bridge_hwm_mib,
        c.bridge_threads,
        c.bridge_us_per_sent_packet,
        c.bridge_us_per_packet,
        c.bridge_cpu_pct_per_endpoint,
        c.bridge_cpu_pct_per_video_stream,
        c.bridge_egress_pps_per_core
    );
    let _ = writeln!(
        o,
        "focus: {:.1} % CPU in the window, {:.1} % over the run ({:.2} CPU s), RSS {:.1} MiB; prosody: {:.1} % CPU, RSS {:.1} MiB; load generator (same machine): {:.1} % CPU, RSS {:.1} MiB",
        c.focus_cpu_pct,
        c.focus_run_cpu_pct,
        c.focus_run_cpu_seconds,
        c.focus_run_rss_max_mib,
        c.prosody_cpu_pct,
        c.prosody_rss_mib,
        c.loadgen_cpu_pct,
        c.loadgen_rss_mib
    );
    let _ = writeln!(
        o,
        "machine: {} CPUs, {:.1} % busy (steal {:.1} %), load1 {:.2}; UDP receive-buffer drops {} (bridge sockets {}, load generator sockets {})",
        sv.cpus,
        sv.machine_busy_pct,
        sv.machine_steal_pct,
        sv.load1_mean,
        sv.udp_rcvbuf_errors,
        c.bridge_udp_drops,
        c.loadgen_udp_drops
    );
    o
}

/// Formats an optional number, `–` when absent.
fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

/// At most ~`rows` evenly spaced points of the timeline (the last one always kept).
fn thin(timeline: &[TimelinePoint], rows: usize) -> Vec<&TimelinePoint> {
    let step = timeline.len().div_ceil(rows.max(1)).max(1);
    let mut out: Vec<&TimelinePoint> = timeline.iter().step_by(step).collect();
    if let Some(last) = timeline.last()
        && out.last().is_none_or(|p| !std::ptr::eq(*p, last))
    {
        out.push(last);
    }
    out
}

/// The report as Markdown: headline table, server side, join times, participants, timeline.
pub fn markdown(r: &RunReport) -> String {
    let s = &r.summary;
    let sc = &r.scenario;
    let m = &s.media;
    let c = &s.costs;
    let sv = &r.server;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Load test: {} conference(s) × {} participants ({} senders each)\n",
        sc.conferences, sc.participants_per_conference, sc.senders_per_conference
    );
    let _ = writeln!(
        o,
        "Video {}, audio from every sender; joins at {:.1}/s, settled after {:.1} s; warm-up {:.0} s; \
         measurement window {:.1} s (t = {:.1}–{:.1} s).\n",
        if sc.video_codec == "av1" {
            "AV1 SVC L3T3_KEY 180p/360p/720p (current lib-jitsi-meet dialect)"
        } else if sc.simulcast {
            "VP8 simulcast 180p/360p/720p"
        } else {
            "VP8 720p"
        },
        sc.join_rate,
        sc.joins_settled_s,
        sc.warmup_s,
        sc.window_s,
        sc.window_start_s,
        sc.window_end_s
    );
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(
        o,
        "| participants joined | {} of {} ({} with failures) |",
        s.connected, s.participants, s.failed
    );
    let _ = writeln!(
        o,
        "| join time, start → bridge channel open | median {:.0} ms, p95 {:.0} ms, max {:.0} ms |",
        s.join_ms.join.median, s.join_ms.join.p95, s.join_ms.join.max
    );
    let _ = writeln!(
        o,
        "| join time, start → everyone's media | median {:.0} ms, p95 {:.0} ms |",
        s.join_ms.join_to_all_media.median, s.join_ms.join_to_all_media.p95
    );
    let _ = writeln!(
        o,
        "| sent (all participants) | {:.0} pps, {:.1} Mbps (median {:.0} kbps per sender) |",
        m.sent_pps, m.sent_mbps, m.sent_kbps_per_sender.median
    );
    let _ = writeln!(
        o,
        "| received per participant | median {:.0} pps, {:.0} kbps |",
        m.received_pps_per_participant.median, m.received_kbps_per_participant.median
    );
    let _ = writeln!(
        o,
        "| received tracks | {} audio, {} video ({} expected missing); video heights {:?} |",
        m.audio_tracks, m.video_tracks, m.missing, m.video_heights
    );
    let _ = writeln!(
        o,
        "| loss | {:.3} % overall, per-track median {:.3} %, max {:.3} %, {} tracks > 1 % |",
        m.loss_pct_overall,
        m.loss_pct_per_track.median,
        m.loss_pct_per_track.max,
        m.tracks_over_1pct_loss
    );
    if let Some(b) = &sv.bridge {
        let _ = writeln!(
            o,
            "| bridge packets | {:.0} pps in, {:.0} pps out (forwarded RTP + RTCP), {:.1} / {:.1} Mbps, {:.0} endpoints, stress max {:.3} |",
            b.packets_received_pps,
            b.packets_sent_pps,
            b.bytes_received_mbps,
            b.bytes_sent_mbps,
            b.endpoints,
            b.stress_level_max
        );
    }
    let _ = writeln!(
        o,
        "| SFU ({}) | {:.3} cores, RSS {:.1} MiB; {:.2} µs CPU per forwarded RTP packet, {:.2} µs per RTP packet in or out (packets counted by the participants) |",
        c.sfu,
        c.sfu_cpu_cores,
        c.sfu_rss_mib,
        c.sfu_us_per_forwarded_packet,
        c.sfu_us_per_packet_in_out
    );
    if let (Some(cores), Some(us)) = (c.sfu_cpu_busy_cores, c.sfu_cpu_busy_us_per_forwarded_packet)
    {
        let _ = writeln!(
            o,
            "| SFU CPUs busy | {cores:.3} cores (/proc/stat, the kernel's receive work included); {us:.2} µs per forwarded RTP packet |"
        );
    }
    let _ = writeln!(
        o,
        "| bridge CPU | {:.3} cores ({:.1} % of one core); {:.2} µs per sent packet; {:.2} % of a core per endpoint |",
        c.bridge_cpu_cores,
        c.bridge_cpu_pct,
        c.bridge_us_per_sent_packet,
        c.bridge_cpu_pct_per_endpoint
    );
    let _ = writeln!(
        o,
        "| bridge RSS | {:.1} MiB max in the window, {:.1} MiB max over the run, {:.2} MiB per endpoint |",
        c.bridge_rss_mib, c.bridge_run_rss_max_mib, c.bridge_rss_mib_per_endpoint
    );
    let _ = writeln!(
        o,
        "| focus | {:.2} % CPU in the window, {:.2} % over the run ({:.2} CPU s); RSS {:.1} MiB max |",
        c.focus_cpu_pct, c.focus_run_cpu_pct, c.focus_run_cpu_seconds, c.focus_run_rss_max_mib
    );
    let _ = writeln!(
        o,
        "| load generator (same machine) | {:.1} % CPU, RSS {:.1} MiB |",
        c.loadgen_cpu_pct, c.loadgen_rss_mib
    );
    let _ = writeln!(
        o,
        "| machine | {} CPUs, {:.1} % busy (steal {:.1} %), load1 {:.2} |",
        sv.cpus, sv.machine_busy_pct, sv.machine_steal_pct, sv.load1_mean
    );
    let _ = writeln!(
        o,
        "| UDP receive-buffer drops | {} on the machine: {} on the bridge's sockets, {} on the load generator's |",
        sv.udp_rcvbuf_errors, c.bridge_udp_drops, c.loadgen_udp_drops
    );

    let _ = writeln!(
        o,
        "\n## Server processes\n\nCPU in % of one core; RSS in MiB from `/proc/<pid>/status`.\n"
    );
    let _ = writeln!(
        o,
        "| process | CPU % (window) | RSS max (window) | UDP drops (window) | CPU % (run) | CPU s (run) | RSS max (run) | VmHWM | threads |\n|---|---|---|---|---|---|---|---|---|"
    );
    let names: std::collections::BTreeSet<&String> =
        sv.processes.keys().chain(sv.run_processes.keys()).collect();
    for n in names {
        let w = sv.processes.get(n).copied().unwrap_or_default();
        let a = sv.run_processes.get(n).copied().unwrap_or_default();
        let _ = writeln!(
            o,
            "| {n} | {:.2} | {:.1} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {} |",
            w.cpu_pct,
            w.rss_max_mib,
            w.udp_drops,
            a.cpu_pct,
            a.cpu_seconds,
            a.rss_max_mib,
            a.hwm_mib,
            a.threads
        );
    }

    let _ = writeln!(
        o,
        "\n## Join times (ms)\n\nThe first two rows and the XMPP login count from the participant's start, \
         the other steps from its conference request.\n"
    );
    let _ = writeln!(
        o,
        "| step | n | median | p90 | p95 | max |\n|---|---|---|---|---|---|"
    );
    for (name, p) in join_steps(&s.join_ms) {
        let _ = writeln!(
            o,
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} |",
            p.n, p.median, p.p90, p.p95, p.max
        );
    }

    let _ = writeln!(
        o,
        "\n## Participants (measurement window)\n\n| conf | endpoint | sender | join ms | sent pps | sent kbps | recv pps | recv kbps | loss % | audio / video tracks | missing | failures |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in &r.participants {
        let audio = p
            .tracks
            .iter()
            .filter(|t| t.kind == Kind::Audio && t.packets > 0)
            .count();
        let video = p
            .tracks
            .iter()
            .filter(|t| t.kind == Kind::Video && t.packets > 0)
            .count();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} | {audio} / {video} | {} | {} |",
            p.conference,
            p.endpoint,
            if p.sender { "yes" } else { "no" },
            opt(p.timings.join_ms, 0),
            p.sent_pps,
            p.sent_kbps,
            p.received_pps,
            p.received_kbps,
            p.loss_pct,
            p.missing.len(),
            p.failures.join("; ").replace('|', "/")
        );
    }

    let video = video_lines(r);
    if !video.is_empty() {
        let _ = writeln!(o, "\n## Video received\n");
        for line in video {
            let _ = writeln!(o, "- {line}");
        }
    }

    if !sv.timeline.is_empty() {
        let _ = writeln!(
            o,
            "\n## Timeline\n\nPer sampling step (CPU % of one core over the step, RSS MiB at its end); t in s since the start.\n"
        );
        let _ = writeln!(
            o,
            "| t | bridge CPU % | bridge RSS | bridge UDP drops | focus CPU % | focus RSS | prosody CPU % | loadtest CPU % | bridge endpoints | bridge pps in | bridge pps out | machine busy % |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        let cell = |p: &TimelinePoint, n: &str| {
            p.processes.get(n).map_or_else(
                || ("–".to_owned(), "–".to_owned()),
                |x| (format!("{:.1}", x.cpu_pct), format!("{:.1}", x.rss_mib)),
            )
        };
        for p in thin(&sv.timeline, 40) {
            let (bc, br) = cell(p, "bridge");
            let bd = p
                .processes
                .get("bridge")
                .map_or_else(|| "–".to_owned(), |x| x.udp_drops.to_string());
            let (fc, fr) = cell(p, "focus");
            let (pc, _) = cell(p, "prosody");
            let (lc, _) = cell(p, "loadtest");
            let _ = writeln!(
                o,
                "| {:.0} | {bc} | {br} | {bd} | {fc} | {fr} | {pc} | {lc} | {} | {} | {} | {} |",
                p.t_s,
                opt(p.bridge_endpoints, 0),
                opt(p.bridge_packets_received_pps, 0),
                opt(p.bridge_packets_sent_pps, 0),
                opt(p.machine_busy_pct, 1)
            );
        }
    }

    if !s.failures.is_empty() {
        let _ = writeln!(o, "\n## Failures\n");
        for f in &s.failures {
            let _ = writeln!(o, "- {f}");
        }
    }
    o
}

/// One Markdown table of several runs' JSON reports (either SFU: `summary.costs.sfu`), then the
/// median µs of SFU CPU per forwarded packet per SFU and load level, and our bridge's over
/// Janus's. Figures absent from a report show as `–`.
pub fn compare_markdown(runs: &[(String, serde_json::Value)]) -> String {
    let mut o = String::new();
    let num = |v: &serde_json::Value, path: &[&str]| -> Option<f64> {
        path.iter().try_fold(v, |v, k| v.get(*k))?.as_f64()
    };
    let _ = writeln!(
        o,
        "| run | SFU | level (senders) | joined | join ms median / p95 | join → all media ms median | SFU CPU (cores) | RTP pps in / forwarded | **µs SFU CPU per forwarded packet** | µs SFU CPUs busy per forwarded packet | µs per packet in+out | SFU RSS MiB | loss % | SFU UDP drops | video tracks by height | load generator CPU (cores) | machine busy % |"
    );
    let _ = writeln!(o, "|{}", "---|".repeat(17));
    // ((conferences, participants, senders), sfu) → µs per forwarded packet of each run.
    type Level = (u64, u64, u64);
    let mut by_level: std::collections::BTreeMap<(Level, String), Vec<f64>> = Default::default();
    for (label, v) in runs {
        let sc = &v["scenario"];
        let s = &v["summary"];
        let sfu = s["costs"]["sfu"]
            .as_str()
            .or_else(|| sc["sfu"].as_str())
            .unwrap_or("bridge")
            .to_owned();
        let level = format!(
            "{}x{}",
            sc["conferences"].as_u64().unwrap_or(0),
            sc["participants_per_conference"].as_u64().unwrap_or(0)
        );
        let senders = sc["senders_per_conference"].as_u64().unwrap_or(0);
        let f = |path: &[&str], d: usize| opt(num(s, path), d);
        let us = num(s, &["costs", "sfu_us_per_forwarded_packet"]);
        if let Some(us) = us.filter(|u| *u > 0.0) {
            let key = (
                sc["conferences"].as_u64().unwrap_or(0),
                sc["participants_per_conference"].as_u64().unwrap_or(0),
                senders,
            );
            by_level.entry((key, sfu.clone())).or_default().push(us);
        }
        let heights = s["media"]["video_heights"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{} × {k}", v.as_u64().unwrap_or(0)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "| {label} | {sfu} | {level} ({senders}) | {}/{} | {} / {} | {} | {} | {} / {} | **{}** | {} | {} | {} | {} | {} | {heights} | {} | {} |",
            f(&["connected"], 0),
            f(&["participants"], 0),
            f(&["join_ms", "join", "median"], 0),
            f(&["join_ms", "join", "p95"], 0),
            f(&["join_ms", "join_to_all_media", "median"], 0),
            f(&["costs", "sfu_cpu_cores"], 3),
            f(&["media", "sent_pps"], 0),
            f(&["media", "received_pps"], 0),
            opt(us, 2),
            f(&["costs", "sfu_cpu_busy_us_per_forwarded_packet"], 2),
            f(&["costs", "sfu_us_per_packet_in_out"], 2),
            f(&["costs", "sfu_rss_mib"], 1),
            f(&["media", "loss_pct_overall"], 3),
            f(&["costs", "sfu_udp_drops"], 0),
            opt(num(s, &["costs", "loadgen_cpu_pct"]).map(|c| c / 100.0), 2),
            opt(num(&v["server"], &["machine_busy_pct"]), 0),
        );
    }
    let levels: std::collections::BTreeSet<Level> = by_level.keys().map(|(l, _)| *l).collect();
    if !levels.is_empty() {
        let _ = writeln!(
            o,
            "\n| level (senders) | bridge µs per forwarded packet (median, runs) | janus µs per forwarded packet (median, runs) | bridge / janus |\n|---|---|---|---|"
        );
        for l in levels {
            let get = |sfu: &str| by_level.get(&(l, sfu.to_owned()));
            let cell = |v: Option<&Vec<f64>>| {
                v.map_or_else(
                    || "–".to_owned(),
                    |v| format!("{:.2} ({})", median_of(v.clone()), v.len()),
                )
            };
            let ratio = match (get("bridge"), get("janus")) {
                (Some(b), Some(j)) if median_of(j.clone()) > 0.0 => {
                    format!("{:.2}", median_of(b.clone()) / median_of(j.clone()))
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                o,
                "| {}x{} ({}) | {} | {} | {ratio} |",
                l.0,
                l.1,
                l.2,
                cell(get("bridge")),
                cell(get("janus"))
            );
        }
    }
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
        assert_eq!(p.p95, 10.0);
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
            codec: "vp8",
            spatial: None,
            units_by_spatial: None,
            undecodable_frames: 0,
            plis: 0,
        };
        let p = ParticipantReport {
            endpoint: "abcd1234".into(),
            sender: true,
            connected: true,
            window_s: 10.0,
            sent_kbps: 1500.0,
            received_pps: 149.0,
            received_kbps: 160.0,
            tracks: vec![
                track(Kind::Audio, 500, 500, None),
                track(Kind::Video, 990, 1000, Some(180)),
            ],
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
                rss_max_mib: 30.0,
                ..ProcessReport::default()
            },
        );
        server.run_processes.insert(
            "focus".into(),
            ProcessReport {
                cpu_pct: 2.0,
                cpu_seconds: 0.4,
                rss_max_mib: 12.0,
                ..ProcessReport::default()
            },
        );
        server.timeline = (1..=100)
            .map(|t| TimelinePoint {
                t_s: f64::from(t),
                processes: [(
                    "bridge".to_owned(),
                    crate::procstat::ProcessPoint {
                        cpu_pct: 42.5,
                        rss_mib: 30.0,
                        udp_drops: 0,
                    },
                )]
                .into_iter()
                .collect(),
                ..TimelinePoint::default()
            })
            .collect();
        let mut r = RunReport::new(ScenarioSummary::default(), vec![p], server);
        let s = &r.summary;
        assert_eq!((s.media.audio_tracks, s.media.video_tracks), (1, 1));
        assert!((s.media.loss_pct_overall - 10.0 / 1500.0 * 100.0).abs() < 1e-9);
        assert_eq!(s.media.tracks_over_1pct_loss, 0);
        assert_eq!(s.media.video_heights.get("180p"), Some(&1));
        assert!((s.costs.bridge_us_per_sent_packet - 50.0).abs() < 1e-9);
        assert!((s.costs.bridge_egress_pps_per_core - 20_000.0).abs() < 1e-9);
        assert!((s.costs.bridge_cpu_pct_per_endpoint - 50.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.costs.bridge_cpu_cores, 0.5);
        assert_eq!(s.costs.focus_run_cpu_seconds, 0.4);
        assert_eq!(s.costs.focus_run_rss_max_mib, 12.0);
        assert_eq!(s.media.sent_kbps_per_sender.median, 1500.0);
        assert_eq!(s.media.received_pps_per_participant.median, 149.0);
        assert!(r.text().contains("1 connected of 1"));
        assert!(serde_json::to_string(&r).unwrap().contains("\"summary\""));
        assert!(r.succeeded());

        let md = r.markdown();
        assert!(
            md.contains("| participants joined | 1 of 1 (0 with failures) |"),
            "{md}"
        );
        assert!(
            md.contains("| bridge CPU | 0.500 cores (50.0 % of one core)"),
            "{md}"
        );
        assert!(
            md.contains("| focus | 0.00 | 0.0 | 0 | 2.00 | 0.40 | 12.0 |"),
            "{md}"
        );
        assert!(md.contains("| 0 | abcd1234 | yes |"), "{md}");
        // The timeline is thinned to about 40 rows, the last step kept.
        let rows = md.lines().filter(|l| l.contains("| 42.5 | 30.0 |")).count();
        assert!((34..=41).contains(&rows), "{rows} rows");
        assert!(md.contains("| 100 | 42.5 | 30.0 | 0 |"), "{md}");
        assert!(!md.contains("## Failures"));

        r.add_failure("bridge exited".into());
        assert!(!r.succeeded());
        assert!(r.markdown().contains("## Failures\n\n- bridge exited"));
    }

    #[test]
    fn compare_puts_both_sfus_in_one_table_with_the_ratio_per_level() {
        let run = |sfu: &str, cores: f64, pps: f64| {
            serde_json::json!({
                "scenario": {"sfu": sfu, "conferences": 1, "participants_per_conference": 5,
                             "senders_per_conference": 5},
                "summary": {"participants": 5, "connected": 5,
                            "join_ms": {"join": {"median": 100.0, "p95": 150.0},
                                        "join_to_all_media": {"median": 900.0}},
                            "media": {"sent_pps": 1500.0, "received_pps": pps, "loss_pct_overall": 0.0,
                                      "video_heights": {"180p": 15, "720p": 5}},
                            "costs": {"sfu": sfu, "sfu_cpu_cores": cores, "sfu_rss_mib": 20.0,
                                      "sfu_udp_drops": 0, "loadgen_cpu_pct": 30.0,
                                      "sfu_us_per_forwarded_packet": cores / pps * 1e6,
                                      "sfu_us_per_packet_in_out": cores / (pps + 1500.0) * 1e6}},
                "server": {"machine_busy_pct": 50.0}
            })
        };
        // A split-namespace run also has its SFU CPUs' busy time.
        let mut split = run("bridge", 0.02, 4000.0);
        split["summary"]["costs"]["sfu_cpu_busy_us_per_forwarded_packet"] = serde_json::json!(6.5);
        let runs = vec![
            ("ours-1".to_owned(), split),
            ("janus-1".to_owned(), run("janus", 0.10, 4000.0)),
            ("ours-2".to_owned(), run("bridge", 0.03, 4000.0)),
            ("janus-2".to_owned(), run("janus", 0.12, 4000.0)),
        ];
        let md = compare_markdown(&runs);
        assert!(
            md.contains("| janus-1 | janus | 1x5 (5) | 5/5 | 100 / 150 | 900 | 0.100 | 1500 / 4000 | **25.00** | – | 18.18 | 20.0 | 0.000 | 0 | 15 × 180p, 5 × 720p | 0.30 | 50 |"),
            "{md}"
        );
        assert!(md.contains("| **5.00** | 6.50 | "), "{md}");
        // Medians: ours (5 + 7.5) / 2 = 6.25 µs, Janus (25 + 30) / 2 = 27.5 µs.
        assert!(
            md.contains("| 1x5 (5) | 6.25 (2) | 27.50 (2) | 0.23 |"),
            "{md}"
        );
    }
}
