//! One conference: the router between its endpoints' uplinks and downlinks.
//!
//! The conference owns the tables (endpoints by slot, sources by slot, which endpoint claimed
//! which SSRC), the dominant speaker detector and its periodic work; per-sender and per-receiver
//! state lives in each endpoint's [`Uplink`](super::uplink::Uplink) and
//! [`Downlink`](super::downlink::Downlink). Its code, by input:
//!
//! | file | job |
//! |---|---|
//! | `membership.rs` | COLIBRI2: endpoints and sources come, change and go; transport state changes |
//! | `media.rs` | an RTP packet: uplink ingress → source measurement → [`Conference::fan_out`] → each downlink's forward |
//! | `feedback.rs` | an RTCP compound from an endpoint: sender reports, keyframe requests, NACKs, estimates; keyframe requests toward senders |
//! | `allocate.rs` | layer selection per receiver, forwarded sets, sender constraints |
//! | `messages.rs` | bridge-channel messages in and out, dominant speaker changes |
//! | `slots.rs` | SSRC rewriting: receivers' slots given to sources, the maps they are told, their feedback translated |
//! | `periodic.rs` | the conference's timers: receiver reports, speaker, housekeeping, layer and probe checks; uplink and downlink timers |

use std::time::{Duration, Instant};

use crate::timer::Deadline;

use super::api::{ConferenceHandle, EndpointHandle, FeedbackSources};
use super::context::{ConferenceTimer, Ctx, TimerKey};
use super::counters::Stat;
use super::endpoint::Endpoint;
use super::link_quality::{LinkStats, SENDING_WINDOW};
use super::model::{HdrExtIds, MediaKind, SsrcMap};
use super::rtcp::ReportBlock;
use super::source::MediaSource;
use super::speaker::SpeakerDetector;
use super::uplink::SsrcRole;

mod allocate;
mod feedback;
mod media;
mod membership;
mod messages;
mod periodic;
mod slots;

/// Most recent dominant speakers kept (JVB keeps 10).
const RECENT_SPEAKERS: usize = 10;
/// How often layer activity (an encoding starting or stopping) is checked.
const LAYER_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How often receivers whose allocation wants more than their estimate may start a probe.
const PROBE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Who claimed an SSRC (COLIBRI2 sources): receivers name other endpoints' SSRCs in keyframe
/// requests, and a second claim by another endpoint is refused.
#[derive(Debug, Clone, Copy)]
struct SsrcClaim {
    owner: u32,
    source: u32,
}

pub(crate) struct Conference {
    pub handle: ConferenceHandle,
    pub meeting_id: String,
    pub name: Option<String>,
    pub feedback: FeedbackSources,
    pub created_at: Instant,
    endpoints: Vec<Option<Endpoint>>,
    ep_gens: Vec<u32>,
    sources: Vec<Option<MediaSource>>,
    src_gens: Vec<u32>,
    ssrc_claims: SsrcMap<SsrcClaim>,
    speaker: Box<dyn SpeakerDetector>,
    /// Endpoints that were dominant, most recent first.
    recent_speakers: Vec<u32>,
    /// Endpoints in the order they joined.
    join_order: Vec<u32>,
    /// Set once the conference had an endpoint (or waited the expiry timeout without one): from
    /// then on it expires as soon as it is empty.
    had_endpoints: bool,
    /// The armed deadline of each periodic job ([`ConferenceTimer`] indexes it).
    timers: [Deadline; ConferenceTimer::ALL.len()],
    /// Reused by receiver-report generation.
    rr_blocks: Vec<(MediaKind, ReportBlock)>,
    /// Whether any endpoint's transport connected, and how many left without ever connecting:
    /// the conference's outcome in `total_failed_conferences` / `..._partially_failed_...`.
    any_connected: bool,
    never_connected: u32,
}

impl Conference {
    pub fn new(
        handle: ConferenceHandle,
        meeting_id: &str,
        name: Option<&str>,
        feedback: FeedbackSources,
        now: Instant,
        ctx: &mut Ctx,
    ) -> Self {
        let speaker: Box<dyn SpeakerDetector> = (ctx.cfg.speaker_detector)(ctx.cfg.silence_timeout);
        let cfg = &ctx.cfg;
        let first = [
            (ConferenceTimer::ReceiverReports, now + cfg.rr_interval),
            (ConferenceTimer::Speaker, now + speaker.interval()),
            (
                ConferenceTimer::Housekeeping,
                now + cfg.housekeeping_interval,
            ),
            (
                ConferenceTimer::Allocation,
                now + cfg.max_time_between_allocations,
            ),
            (ConferenceTimer::LayerCheck, now + LAYER_CHECK_INTERVAL),
            (ConferenceTimer::ProbeCheck, now + PROBE_CHECK_INTERVAL),
        ];
        let mut c = Conference {
            handle,
            meeting_id: meeting_id.to_owned(),
            name: name.map(str::to_owned),
            feedback,
            created_at: now,
            endpoints: Vec::new(),
            ep_gens: Vec::new(),
            sources: Vec::new(),
            src_gens: Vec::new(),
            ssrc_claims: SsrcMap::default(),
            speaker,
            recent_speakers: Vec::new(),
            join_order: Vec::new(),
            had_endpoints: false,
            timers: [Deadline::default(); ConferenceTimer::ALL.len()],
            rr_blocks: Vec::new(),
            any_connected: false,
            never_connected: 0,
        };
        for (t, at) in first {
            c.arm(t, Some(at), ctx);
        }
        c
    }

    /// Arms periodic job `t` at exactly `at`.
    fn arm(&mut self, t: ConferenceTimer, at: Option<Instant>, ctx: &mut Ctx) {
        let key = TimerKey::Conference(self.handle, t);
        ctx.timers.set(&mut self.timers[t.index()], key, at);
    }

    /// Arms periodic job `t` at `at` if that is earlier than its armed deadline.
    fn arm_earlier(&mut self, t: ConferenceTimer, at: Option<Instant>, ctx: &mut Ctx) {
        let key = TimerKey::Conference(self.handle, t);
        ctx.timers.lower(&mut self.timers[t.index()], key, at);
    }

    /// Runs a re-allocation at `now` from the timer (after the current input): the layers changed.
    fn reallocate_soon(&mut self, now: Instant, ctx: &mut Ctx) {
        self.arm_earlier(ConferenceTimer::Allocation, Some(now), ctx);
    }

    // ------------------------------------------------------------------------------ lookups

    pub fn endpoint(&self, h: EndpointHandle) -> Option<&Endpoint> {
        if h.conf != self.handle {
            return None;
        }
        self.endpoints
            .get(h.idx as usize)?
            .as_ref()
            .filter(|e| e.handle == h)
    }

    fn endpoint_mut(&mut self, h: EndpointHandle) -> Option<&mut Endpoint> {
        if h.conf != self.handle {
            return None;
        }
        self.endpoints
            .get_mut(h.idx as usize)?
            .as_mut()
            .filter(|e| e.handle == h)
    }

    fn ep(&self, idx: u32) -> Option<&Endpoint> {
        self.endpoints.get(idx as usize)?.as_ref()
    }

    fn src(&self, idx: u32) -> Option<&MediaSource> {
        self.sources.get(idx as usize)?.as_ref()
    }

    /// Endpoint `h` mutably, with read access to the others (a source owner's parameters) and the
    /// source table.
    fn split(
        &mut self,
        h: EndpointHandle,
    ) -> Option<(&mut Endpoint, Peers<'_>, &[Option<MediaSource>])> {
        if h.conf != self.handle {
            return None;
        }
        let i = h.idx as usize;
        if i >= self.endpoints.len() {
            return None;
        }
        let (before, rest) = self.endpoints.split_at_mut(i);
        let (me, after) = rest.split_first_mut()?;
        let me = me.as_mut().filter(|e| e.handle == h)?;
        Some((
            me,
            Peers {
                before,
                after,
                at: i,
            },
            &self.sources,
        ))
    }

    pub fn find_endpoint(&self, id: &str) -> Option<EndpointHandle> {
        self.endpoints
            .iter()
            .flatten()
            .find(|e| e.id == id)
            .map(|e| e.handle)
    }

    pub fn endpoint_handles(&self) -> impl Iterator<Item = EndpointHandle> + '_ {
        self.endpoints.iter().flatten().map(|e| e.handle)
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.iter().flatten().count()
    }

    pub fn active_endpoint_count(&self) -> usize {
        self.endpoints
            .iter()
            .flatten()
            .filter(|e| e.last_media.is_some() && e.active)
            .count()
    }

    pub fn source_count(&self) -> usize {
        self.sources.iter().flatten().count()
    }

    /// Adds this conference's endpoints to the bridge's link measurements.
    pub fn add_link_stats(&self, now: Instant, s: &mut LinkStats) {
        let recent = |t: Option<Instant>| {
            t.is_some_and(|t| now.saturating_duration_since(t) <= SENDING_WINDOW)
        };
        for ep in self.endpoints.iter().flatten() {
            s.audio_channels += u64::from(ep.audio.pts != 0);
            s.video_channels += u64::from(ep.video.pts != 0);
            s.video_streams += ep.downlink.forwarded.len() as u64;
            let (mut audio, mut video) = (false, false);
            for (_, e) in ep.uplink.ssrcs.iter() {
                if e.role != SsrcRole::Media || !recent(e.stats.last_arrival()) {
                    continue;
                }
                match e.kind {
                    MediaKind::Audio => audio = true,
                    MediaKind::Video => video = true,
                }
                s.jitter_ms_sum += e.stats.jitter_ms();
                s.jitter_count += 1;
            }
            s.endpoints_sending_audio += u64::from(audio);
            s.endpoints_sending_video += u64::from(video);
            if let Some(rtt) = ep.downlink.link.rtt {
                s.rtt_ms_sum += rtt.as_secs_f64() * 1000.0;
                s.rtt_count += 1;
            }
        }
    }

    /// How the conference went, for the failure counters; asked when it expires.
    pub fn outcome(&self) -> Option<Stat> {
        match (self.any_connected, self.never_connected) {
            (false, n) if n > 0 => Some(Stat::ConferencesFailed),
            (true, n) if n > 0 => Some(Stat::ConferencesPartiallyFailed),
            _ => None,
        }
    }

    pub fn should_expire(&self) -> bool {
        self.endpoint_count() == 0 && self.had_endpoints
    }

    /// Milliseconds since the conference started (the layer measurement clock).
    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.created_at).as_millis() as u64
    }
}

/// Every endpoint of a conference but the one held mutably (see [`Conference::split`]).
pub(crate) struct Peers<'a> {
    before: &'a [Option<Endpoint>],
    after: &'a [Option<Endpoint>],
    at: usize,
}

impl Peers<'_> {
    pub fn get(&self, idx: u32) -> Option<&Endpoint> {
        let i = idx as usize;
        match i.cmp(&self.at) {
            std::cmp::Ordering::Less => self.before.get(i)?.as_ref(),
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Greater => self.after.get(i - self.at - 1)?.as_ref(),
        }
    }

    /// The header extension ids endpoint `idx` negotiated for `kind`.
    pub fn ext(&self, idx: u32, kind: MediaKind) -> Option<HdrExtIds> {
        Some(self.get(idx)?.params(kind).ext)
    }
}

/// Combines two maxHeight values: unlimited (-1) wins, else the larger.
fn max_height(a: i32, b: i32) -> i32 {
    if a < 0 || b < 0 { -1 } else { a.max(b) }
}

/// Next deadline of a periodic timer, skipping missed periods.
fn advance(deadline: Instant, now: Instant, period: Duration) -> Instant {
    let next = deadline + period;
    if next <= now { now + period } else { next }
}
