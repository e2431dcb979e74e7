//! A load scenario: `conferences` × `participants`, the first `senders` of each conference sending
//! audio and video, joined at `join_rate` per second; once everybody is connected (or failed) and a
//! warm-up has passed, a measurement window of `duration`; then everybody leaves. The server side
//! is sampled throughout.

use std::time::{Duration, Instant};

use bridge::transport::dtls::SrtpProfile;
use signaling::xmpp::{BareJid, Jid};
use tokio::sync::{mpsc, watch};

use crate::deployment::Target;
use crate::dialect::Client;
use crate::janus::JanusRoom;
use crate::media::ReceiveView;
use crate::participant::{self, ParticipantConfig, ParticipantReport, Phase};
use crate::procstat::{Sampler, Targets, clock_ticks, summarize};
use crate::report::{RunReport, ScenarioSummary};
use crate::sender::Speaking;
use crate::session::endpoint_id;

/// What to run.
#[derive(Debug, Clone)]
pub struct ScenarioConfig {
    pub conferences: usize,
    pub participants: usize,
    /// Senders per conference (the others only receive).
    pub senders: usize,
    pub duration: Duration,
    /// Between "everybody connected" and the measurement window.
    pub warmup: Duration,
    pub simulcast: bool,
    /// Joins per second over all conferences.
    pub join_rate: f64,
    pub join_timeout: Duration,
    pub room_prefix: String,
    pub view: ReceiveView,
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Each sender talks for this long in turn.
    pub speaker_slot: Duration,
    pub sample_interval: Duration,
    /// Sampling goes on this long after everybody left (memory given back, CPU back to idle).
    pub cooldown: Duration,
    /// The client every participant imitates (dialect, AV1, SSRC rewriting).
    pub client: Client,
    /// The last this many participants of each conference use tile view (nobody on stage, every
    /// video at `view.thumbnail_height`); the others stage view.
    pub tile_viewers: usize,
    /// The participants' address (their sockets and ICE candidates): 127.0.0.1, or the load
    /// generator's end of the split namespaces (`crate::netns`).
    pub bind: std::net::IpAddr,
    /// The participants ask for UDP GRO on their sockets (`participant::ReceiveBuffers`).
    pub receiver_gro: bool,
    /// CPUs whose whole busy time (`/proc/stat`) is reported as the SFU's (split namespaces).
    pub sfu_cpus: Vec<usize>,
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            conferences: 1,
            participants: 3,
            senders: 3,
            duration: Duration::from_secs(30),
            warmup: Duration::from_secs(5),
            simulcast: true,
            join_rate: 5.0,
            join_timeout: Duration::from_secs(60),
            room_prefix: "loadtest".into(),
            view: ReceiveView {
                stage_height: 720,
                thumbnail_height: 180,
                tile_view: false,
            },
            srtp_profiles: vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
            speaker_slot: Duration::from_secs(3),
            sample_interval: Duration::from_secs(1),
            cooldown: Duration::from_secs(2),
            client: Client::Y2021,
            tile_viewers: 0,
            bind: std::net::IpAddr::from([127, 0, 0, 1]),
            receiver_gro: false,
            sfu_cpus: Vec::new(),
        }
    }
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u64::from_be_bytes(b)
}

/// Participant configurations for `cfg` against `target` (unique endpoint ids).
pub fn plan(cfg: &ScenarioConfig, target: &Target) -> anyhow::Result<Vec<ParticipantConfig>> {
    let focus = Jid::new(&target.focus)?;
    let run_tag = (random_u64() & 0xffff_ffff) as u32;
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::new();
    for c in 0..cfg.conferences {
        let room = BareJid::new(&format!(
            "{}-{run_tag:08x}-{c}@{}",
            cfg.room_prefix, target.muc_domain
        ))?;
        let mut ids = Vec::new();
        while ids.len() < cfg.participants {
            let id = endpoint_id(random_u64() as u32);
            if used.insert(id.clone()) {
                ids.push(id);
            }
        }
        let senders = cfg.senders.min(cfg.participants);
        for (i, id) in ids.iter().enumerate() {
            let sender = i < senders;
            out.push(ParticipantConfig {
                conference: c,
                index: out.len(),
                endpoint: id.clone(),
                display_name: format!("loadtest-{c}-{i}"),
                room: room.clone(),
                domain: target.domain.clone(),
                focus: focus.clone(),
                server: target.server.clone(),
                sender,
                simulcast: cfg.simulcast,
                speaking: Speaking {
                    index: i as u32,
                    count: senders.max(1) as u32,
                    slot: cfg.speaker_slot,
                },
                srtp_profiles: cfg.srtp_profiles.clone(),
                view: ReceiveView {
                    tile_view: cfg.view.tile_view
                        || i + cfg.tile_viewers.min(cfg.participants) >= cfg.participants,
                    ..cfg.view
                },
                bind: cfg.bind,
                receiver_gro: cfg.receiver_gro,
                join_timeout: cfg.join_timeout,
                expected_senders: ids
                    .iter()
                    .take(senders)
                    .filter(|s| *s != id)
                    .cloned()
                    .collect(),
                seed: random_u64(),
                client: cfg.client,
            });
        }
    }
    Ok(out)
}

/// Runs the scenario and measures it (must run inside a multi-threaded tokio runtime).
pub async fn run(cfg: &ScenarioConfig, target: &Target) -> anyhow::Result<RunReport> {
    let plan = plan(cfg, target)?;
    let total = plan.len();
    let mut processes = target.pids.clone();
    processes.push(("loadtest".into(), std::process::id()));
    let t0 = Instant::now();
    let sampler = Sampler::start(
        Targets {
            processes,
            bridge_stats_url: target.bridge_stats_url.clone(),
            sfu_cpus: cfg.sfu_cpus.clone(),
        },
        cfg.sample_interval,
    );
    // Janus: one VideoRoom room per conference, created before anybody joins.
    let mut janus_rooms = Vec::new();
    let janus_ip = target
        .janus_url
        .as_deref()
        .map(crate::janus::api::host_ip)
        .transpose()?;
    if let Some(url) = &target.janus_url {
        let base = (random_u64() & 0x000f_ffff) * 1000;
        for c in 0..cfg.conferences {
            let room = base + c as u64 + 1;
            crate::janus::api::create_room(url, room, cfg.participants)
                .await
                .map_err(|e| anyhow::anyhow!("create Janus room {room}: {e}"))?;
            janus_rooms.push(room);
        }
    }
    let (phase_tx, phase_rx) = watch::channel(Phase::Joining);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(total);
    let pace = Duration::from_secs_f64(1.0 / cfg.join_rate.max(0.01));
    for (i, p) in plan.into_iter().enumerate() {
        let at = tokio::time::Instant::from_std(t0 + pace * i as u32);
        let phase = phase_rx.clone();
        let progress = progress_tx.clone();
        let janus = target
            .janus_url
            .clone()
            .zip(janus_ip)
            .map(|(url, sfu_ip)| JanusRoom {
                url,
                sfu_ip,
                room: janus_rooms.get(p.conference).copied().unwrap_or(0),
                feed: p.index as u64 + 1,
            });
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            match janus {
                Some(room) => crate::janus::participant::run(p, room, phase, progress).await,
                None => participant::run(p, phase, progress).await,
            }
        }));
    }
    drop(progress_tx);

    // Everybody connected or failed (or the join deadline of the last one passed).
    let joins_end = t0 + pace * total as u32 + cfg.join_timeout;
    let mut connected = 0;
    let mut settled = 0;
    while settled < total {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(joins_end),
            progress_rx.recv(),
        )
        .await
        {
            Ok(Some((_, r))) => {
                settled += 1;
                connected += usize::from(r.is_ok());
            }
            Ok(None) | Err(_) => break,
        }
    }
    let joined_at = Instant::now();
    tracing::info!(
        connected,
        total,
        secs = (joined_at - t0).as_secs_f64(),
        "joins settled"
    );
    tokio::time::sleep(cfg.warmup).await;
    let measure_start = Instant::now();
    let _ = phase_tx.send(Phase::Measuring);
    tokio::time::sleep(cfg.duration).await;
    let measure_end = Instant::now();
    let _ = phase_tx.send(Phase::Leaving);
    let mut participants: Vec<ParticipantReport> = Vec::with_capacity(total);
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(30), t).await {
            Ok(Ok(r)) => participants.push(r),
            Ok(Err(e)) => participants.push(ParticipantReport {
                failures: vec![format!("participant task panicked: {e}")],
                ..ParticipantReport::default()
            }),
            Err(_) => participants.push(ParticipantReport {
                failures: vec!["participant did not leave within 30 s".into()],
                ..ParticipantReport::default()
            }),
        }
    }
    tokio::time::sleep(cfg.cooldown).await;
    let samples = sampler.finish();
    let server = summarize(&samples, t0, measure_start, measure_end, clock_ticks());
    let scenario = ScenarioSummary {
        sfu: if target.janus_url.is_some() {
            "janus"
        } else {
            "bridge"
        }
        .into(),
        conferences: cfg.conferences,
        participants_per_conference: cfg.participants,
        senders_per_conference: cfg.senders.min(cfg.participants),
        duration_s: cfg.duration.as_secs_f64(),
        warmup_s: cfg.warmup.as_secs_f64(),
        simulcast: cfg.simulcast,
        dialect: cfg.client.dialect.to_string(),
        video_codec: if cfg.client.sends_av1() { "av1" } else { "vp8" }.into(),
        ssrc_rewriting: cfg.client.rewrites_ssrcs(),
        join_rate: cfg.join_rate,
        joins_settled_s: joined_at.saturating_duration_since(t0).as_secs_f64(),
        window_start_s: measure_start.saturating_duration_since(t0).as_secs_f64(),
        window_end_s: measure_end.saturating_duration_since(t0).as_secs_f64(),
        window_s: measure_end
            .saturating_duration_since(measure_start)
            .as_secs_f64(),
    };
    Ok(RunReport::new(scenario, participants, server))
}
