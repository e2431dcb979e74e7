//! In-place ICE restart (RFC 8445 §9), make-before-break: one endpoint's ICE generations.
//!
//! The established [`IceAgent`] (the *current* generation) keeps its selected pair, its consent
//! checks and all media while a restart's new agent (the *pending* generation, new local ufrag and
//! password) answers the peer's checks for the new credentials and, once the peer's own new
//! credentials are signalled, checks and nominates (or, controlled or lite, waits to be nominated).
//! When the pending agent selects a pair it becomes current: media moves to its pair (DTLS and
//! SRTP are untouched: a restart changes ICE only), and the previous agent *retires* — it still
//! answers checks for its credentials and its addresses still pass DTLS/SRTP for
//! [`IceConfig::restart_transition`] (3 s, JVB's `transition-window`), so packets the peer sent on
//! the old pair before it switched are not lost. Then its ufrag and the addresses only it had
//! validated are dropped ([`Retired`], for the port's demux and the workers' directory).
//!
//! As JVB (`jvb/.../transport/ice/IceTransport.kt`, `requestIceRestart`, `cutOver`,
//! `abandonPendingRestart`): generations count from 1 per endpoint; a restart asked for before the
//! first pair was selected keeps the existing agent ([`IceRestart::NotEstablished`]); a repeated
//! request before the peer answered the pending one gets the same generation back; a newer one
//! supersedes a pending restart the peer already answered; a pending generation that does not
//! connect within [`IceConfig::restart_timeout`] (20 s) is abandoned and the established one kept.
//! Unlike JVB, a consent failure of the established agent while a restart is pending is held
//! back until the restart connects (then forgotten) or is abandoned (then reported): the restart
//! is how the peer recovers from exactly that.
//!
//! Which agent a datagram belongs to: a STUN request by the local ufrag in its USERNAME, a STUN
//! response by its transaction id; DTLS and SRTP are accepted from an address any live generation
//! validated.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::counters::DropCounters;
use super::ice::{
    IceAgent, IceConfig, IceCredentials, IceEvent, IceRole, IceState, RemoteCandidate, StunTransmit,
};
use super::rng::TransportRng;
use super::stun::{Class, Message};

/// What a restart request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceRestart {
    /// A new generation is pending: signal [`IceGenerations::advertised_credentials`] tagged with
    /// `generation`. `superseded`: a pending generation the peer had answered, now dropped.
    Started {
        generation: u32,
        superseded: Option<u32>,
    },
    /// A restart is pending and the peer has not answered it yet: signal it again.
    Repeated { generation: u32 },
    /// ICE never selected a pair: nothing to restart, signal the current transport unchanged.
    NotEstablished,
    /// The transport failed (terminal): it cannot be restarted.
    Unavailable,
}

/// Where a signalled remote transport went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteFor {
    Current,
    Pending,
    /// A generation that is gone (superseded, abandoned, or the retiring one): ignored.
    Stale,
}

/// Routes of generations that are gone: local ufrags, and remote addresses that no live
/// generation validated (the port forgets them for this endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retired {
    pub ufrags: Vec<String>,
    pub addrs: Vec<SocketAddr>,
}

impl Retired {
    pub fn is_empty(&self) -> bool {
        self.ufrags.is_empty() && self.addrs.is_empty()
    }
}

struct Pending {
    agent: IceAgent,
    generation: u32,
    deadline: Instant,
    /// The peer signalled its credentials for this generation.
    answered: bool,
}

struct Retiring {
    agent: IceAgent,
    until: Instant,
}

#[derive(Clone, Copy)]
enum Which {
    Current,
    Pending,
    Retiring,
}

/// One endpoint's ICE: the current generation, and during a restart the pending and/or retiring
/// one (see the module docs).
pub struct IceGenerations {
    cfg: IceConfig,
    counters: Arc<DropCounters>,
    /// New generations' credentials and agents' randomness.
    rng: TransportRng,
    current: IceAgent,
    /// The current agent's generation (0: the initial one, never signalled).
    generation: u32,
    last_generation: u32,
    pending: Option<Pending>,
    retiring: Option<Retiring>,
    /// The current agent failed while a restart was pending.
    deferred_failure: Option<String>,
    events: VecDeque<IceEvent>,
    retired: Retired,
}

impl IceGenerations {
    pub fn new(
        local: IceCredentials,
        cfg: IceConfig,
        counters: Arc<DropCounters>,
        mut rng: TransportRng,
    ) -> Self {
        let current = IceAgent::new(local, cfg.clone(), counters.clone(), rng.fork());
        Self {
            cfg,
            counters,
            rng,
            current,
            generation: 0,
            last_generation: 0,
            pending: None,
            retiring: None,
            deferred_failure: None,
            events: VecDeque::new(),
            retired: Retired::default(),
        }
    }

    /// The agent media uses.
    pub fn current(&self) -> &IceAgent {
        &self.current
    }

    pub fn local_credentials(&self) -> &IceCredentials {
        self.current.local_credentials()
    }

    /// The credentials to signal: the pending generation's during a restart, else the current's.
    pub fn advertised_credentials(&self) -> &IceCredentials {
        self.pending
            .as_ref()
            .map_or(self.current.local_credentials(), |p| {
                p.agent.local_credentials()
            })
    }

    /// The `ice-generation` to signal with [`advertised_credentials`](Self::advertised_credentials):
    /// `None` until the first restart.
    pub fn advertised_generation(&self) -> Option<u32> {
        let g = self
            .pending
            .as_ref()
            .map_or(self.generation, |p| p.generation);
        (g > 0).then_some(g)
    }

    /// The current generation (0 before any restart took over).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Whether a restart is pending.
    pub fn restart_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether a previous generation still answers (its transition window).
    pub fn retiring(&self) -> bool {
        self.retiring.is_some()
    }

    pub fn state(&self) -> IceState {
        self.current.state()
    }

    pub fn selected(&self) -> Option<SocketAddr> {
        self.current.selected()
    }

    pub fn send_address(&self) -> Option<SocketAddr> {
        self.current.send_address()
    }

    /// Whether a live generation validated `addr`.
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.current.is_validated(addr)
            || self
                .pending
                .as_ref()
                .is_some_and(|p| p.agent.is_validated(addr))
            || self
                .retiring
                .as_ref()
                .is_some_and(|r| r.agent.is_validated(addr))
    }

    /// Starts an in-place restart (see [`IceRestart`]).
    pub fn restart(&mut self, now: Instant) -> IceRestart {
        if self.current.selected().is_none() {
            return IceRestart::NotEstablished;
        }
        if let Some(p) = &self.pending
            && !p.answered
        {
            return IceRestart::Repeated {
                generation: p.generation,
            };
        }
        let superseded = self.pending.take().map(|p| {
            self.drop_agent(p.agent);
            p.generation
        });
        let creds = IceCredentials::generate(&mut self.rng);
        let cfg = IceConfig {
            // Keep the role the current agent ended up in (a role conflict may have switched it).
            role: if self.current.is_controlling() {
                IceRole::Controlling
            } else {
                IceRole::Controlled
            },
            ..self.cfg.clone()
        };
        self.last_generation += 1;
        self.pending = Some(Pending {
            agent: IceAgent::new(creds, cfg, self.counters.clone(), self.rng.fork()),
            generation: self.last_generation,
            deadline: now + self.cfg.restart_timeout,
            answered: false,
        });
        IceRestart::Started {
            generation: self.last_generation,
            superseded,
        }
    }

    /// The peer's credentials and candidates. Tagged with `generation` (the peer's answer to a
    /// restart): to that generation if it is pending or current, else ignored. Untagged: to the
    /// current generation, except credentials that are the pending generation's (the peer
    /// trickling candidates for it, possibly before its tagged answer) or the retiring one's
    /// (late), so the established agent never takes the new generation's credentials.
    pub fn set_remote(
        &mut self,
        now: Instant,
        remote: IceCredentials,
        candidates: &[RemoteCandidate],
        generation: Option<u32>,
    ) -> RemoteFor {
        let to = match generation {
            Some(g) if self.pending.as_ref().is_some_and(|p| p.generation == g) => {
                RemoteFor::Pending
            }
            Some(g) if g == self.generation => RemoteFor::Current,
            Some(_) => RemoteFor::Stale,
            None => {
                let current = self.current.remote_credentials();
                let for_pending =
                    self.pending
                        .as_ref()
                        .is_some_and(|p| match p.agent.remote_credentials() {
                            Some(r) => *r == remote,
                            None => current.is_some_and(|c| *c != remote),
                        });
                let retired = self
                    .retiring
                    .as_ref()
                    .and_then(|r| r.agent.remote_credentials())
                    .is_some_and(|r| *r == remote);
                if for_pending {
                    RemoteFor::Pending
                } else if retired && current.is_some_and(|c| *c != remote) {
                    RemoteFor::Stale
                } else {
                    RemoteFor::Current
                }
            }
        };
        match to {
            RemoteFor::Current => self.current.set_remote(now, remote, candidates),
            RemoteFor::Pending => {
                if let Some(p) = &mut self.pending {
                    p.answered = true;
                    p.agent.set_remote(now, remote, candidates);
                }
            }
            RemoteFor::Stale => {}
        }
        self.collect(now);
        to
    }

    /// Trickled candidates (no credentials): the current generation's.
    pub fn add_remote_candidates(&mut self, now: Instant, candidates: &[RemoteCandidate]) {
        self.current.add_remote_candidates(now, candidates);
        self.collect(now);
    }

    /// A STUN datagram from `from`, to the generation it belongs to.
    pub fn handle_stun(&mut self, now: Instant, from: SocketAddr, raw: &[u8]) {
        match self.owner(raw) {
            Which::Current => self.current.handle_stun(now, from, raw),
            Which::Pending => {
                if let Some(p) = &mut self.pending {
                    p.agent.handle_stun(now, from, raw);
                }
            }
            Which::Retiring => {
                if let Some(r) = &mut self.retiring {
                    r.agent.handle_stun(now, from, raw);
                }
            }
        }
        self.collect(now);
    }

    fn owner(&self, raw: &[u8]) -> Which {
        if self.pending.is_none() && self.retiring.is_none() {
            return Which::Current;
        }
        let Ok(msg) = Message::parse(raw) else {
            return Which::Current; // counted as malformed there
        };
        let pending = self.pending.as_ref().map(|p| &p.agent);
        let retiring = self.retiring.as_ref().map(|r| &r.agent);
        let is = |a: Option<&IceAgent>| -> bool {
            a.is_some_and(|a| match msg.class {
                Class::Request => msg
                    .username()
                    .and_then(|u| u.split(':').next())
                    .is_some_and(|u| u == a.local_credentials().ufrag),
                _ => a.has_transaction(&msg.transaction_id),
            })
        };
        if is(pending) {
            Which::Pending
        } else if is(retiring) {
            Which::Retiring
        } else {
            Which::Current
        }
    }

    /// Authenticated DTLS/SRTP from `from` (lite consent), for the current generation.
    pub fn note_authenticated_traffic(&mut self, now: Instant, from: SocketAddr) {
        self.current.note_authenticated_traffic(now, from);
    }

    /// Timers of the current and pending generations; the restart timeout; the end of the
    /// retiring one's transition window. (A retiring agent only answers: no timers.)
    pub fn handle_timeout(&mut self, now: Instant) {
        self.current.handle_timeout(now);
        if let Some(p) = &mut self.pending {
            p.agent.handle_timeout(now);
        }
        self.collect(now);
        if let Some(p) = &self.pending
            && p.deadline <= now
        {
            let why = format!(
                "generation {} did not connect within {:?}",
                p.generation, self.cfg.restart_timeout
            );
            self.abandon(why);
        }
        if self.retiring.as_ref().is_some_and(|r| r.until <= now)
            && let Some(r) = self.retiring.take()
        {
            self.drop_agent(r.agent);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.current.poll_timeout(),
            self.pending.as_ref().and_then(|p| p.agent.poll_timeout()),
            self.pending.as_ref().map(|p| p.deadline),
            self.retiring.as_ref().map(|r| r.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<StunTransmit> {
        if let Some(t) = self.current.poll_transmit() {
            return Some(t);
        }
        if let Some(t) = self.pending.as_mut().and_then(|p| p.agent.poll_transmit()) {
            return Some(t);
        }
        self.retiring.as_mut().and_then(|r| r.agent.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// Ufrags and addresses of generations dropped since the last call.
    pub fn take_retired(&mut self) -> Option<Retired> {
        (!self.retired.is_empty()).then(|| std::mem::take(&mut self.retired))
    }

    /// Moves the agents' events into ours: the pending agent connecting is the cut-over, its
    /// failure abandons the restart; the current agent's failure waits while a restart is pending;
    /// a retiring agent's events mean nothing any more.
    fn collect(&mut self, now: Instant) {
        while let Some(e) = self.current.poll_event() {
            match e {
                IceEvent::Failed(r) if self.pending.is_some() => {
                    self.deferred_failure.get_or_insert(r);
                }
                e => self.events.push_back(e),
            }
        }
        let mut outcome = None;
        if let Some(p) = &mut self.pending {
            while let Some(e) = p.agent.poll_event() {
                match e {
                    IceEvent::Connected(a) => outcome = Some(Ok(a)),
                    IceEvent::Failed(r) => outcome = Some(Err(r)),
                    _ => {}
                }
                if outcome.is_some() {
                    break;
                }
            }
        }
        match outcome {
            Some(Ok(addr)) => self.cut_over(now, addr),
            Some(Err(reason)) => self.abandon(reason),
            None => {}
        }
        if let Some(r) = &mut self.retiring {
            while r.agent.poll_event().is_some() {}
        }
    }

    fn cut_over(&mut self, now: Instant, addr: SocketAddr) {
        let Some(p) = self.pending.take() else { return };
        let old = std::mem::replace(&mut self.current, p.agent);
        self.generation = p.generation;
        self.deferred_failure = None;
        let was_up = old.state() == IceState::Connected;
        let old_selected = old.selected();
        let previous = self.retiring.replace(Retiring {
            agent: old,
            until: now + self.cfg.restart_transition,
        });
        if let Some(prev) = previous {
            self.drop_agent(prev.agent);
        }
        if !was_up {
            self.events.push_back(IceEvent::Connected(addr));
        } else if old_selected != Some(addr) {
            self.events.push_back(IceEvent::SelectedChanged(addr));
        }
        self.events.push_back(IceEvent::Restarted(p.generation));
    }

    fn abandon(&mut self, reason: String) {
        let Some(p) = self.pending.take() else { return };
        self.drop_agent(p.agent);
        self.events
            .push_back(IceEvent::RestartFailed(p.generation, reason));
        if let Some(r) = self.deferred_failure.take() {
            self.events.push_back(IceEvent::Failed(r));
        }
    }

    /// Records a dropped agent's ufrag and the addresses no live generation validated.
    fn drop_agent(&mut self, agent: IceAgent) {
        self.retired
            .ufrags
            .push(agent.local_credentials().ufrag.clone());
        for &a in agent.validated_addresses() {
            if !self.is_validated(a) && !self.retired.addrs.contains(&a) {
                self.retired.addrs.push(a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const BRIDGE: &str = "127.0.0.1:10000";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A participant's agent (full, controlled) knowing the bridge's `creds`.
    fn peer(rng: &mut TransportRng, creds: &IceCredentials, now: Instant) -> IceAgent {
        let mut p = IceAgent::new(
            IceCredentials::generate(rng),
            IceConfig {
                role: IceRole::Controlled,
                ..IceConfig::default()
            },
            Arc::new(DropCounters::new()),
            rng.fork(),
        );
        p.set_remote(
            now,
            creds.clone(),
            &[RemoteCandidate {
                addr: addr(BRIDGE),
                priority: 1,
            }],
        );
        p
    }

    /// Runs timers and moves STUN between `g` and `p` (at `at`) for `d`, in 10 ms steps; returns
    /// `g`'s events with their times.
    fn run(
        g: &mut IceGenerations,
        p: Option<(&mut IceAgent, SocketAddr)>,
        from: Instant,
        d: Duration,
    ) -> Vec<(Duration, IceEvent)> {
        let mut p = p;
        let mut events = Vec::new();
        let mut now = from;
        while now < from + d {
            g.handle_timeout(now);
            if let Some((p, at)) = &mut p {
                p.handle_timeout(now);
                for _ in 0..10 {
                    let mut moved = false;
                    while let Some(t) = p.poll_transmit() {
                        g.handle_stun(now, *at, &t.data);
                        moved = true;
                    }
                    while let Some(t) = g.poll_transmit() {
                        if t.to == *at {
                            p.handle_stun(now, addr(BRIDGE), &t.data);
                            moved = true;
                        }
                    }
                    if !moved {
                        break;
                    }
                }
            } else {
                while g.poll_transmit().is_some() {}
            }
            while let Some(e) = g.poll_event() {
                events.push((now - from, e));
            }
            now += Duration::from_millis(10);
        }
        events
    }

    fn connected(seed: u64, cfg: IceConfig) -> (IceGenerations, IceAgent, TransportRng, Instant) {
        let mut rng = TransportRng::seeded(seed);
        let t0 = Instant::now();
        let mut g = IceGenerations::new(
            IceCredentials::generate(&mut rng),
            cfg,
            Arc::new(DropCounters::new()),
            rng.fork(),
        );
        let mut p = peer(&mut rng, g.local_credentials(), t0);
        let pc = p.local_credentials().clone();
        g.set_remote(t0, pc, &[], None);
        let ev = run(
            &mut g,
            Some((&mut p, addr("127.0.0.1:40000"))),
            t0,
            Duration::from_secs(1),
        );
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(matches!(ev[0].1, IceEvent::Connected(_)));
        (g, p, rng, t0 + Duration::from_secs(1))
    }

    /// The established agent loses consent while a restart is pending: its failure is held back
    /// — and forgotten when the restart connects, reported after the restart's own failure when it
    /// does not. Without the hold the transport would fail under a restart about to save it.
    #[test]
    fn a_consent_failure_waits_for_the_pending_restart() {
        let cfg = IceConfig {
            restart_timeout: Duration::from_secs(40),
            ..IceConfig::default()
        };
        for connects in [true, false] {
            let (mut g, _old_peer, mut rng, t) = connected(1, cfg.clone());
            assert!(matches!(
                g.restart(t),
                IceRestart::Started { generation: 1, .. }
            ));
            // The peer is silent: consent fails at 30 s (held), nothing else happens until 35 s.
            let ev = run(&mut g, None, t, Duration::from_secs(35));
            assert_eq!(
                ev.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
                vec![IceEvent::Disconnected],
                "connects={connects}"
            );
            let t = t + Duration::from_secs(35);
            if connects {
                // It comes back with new credentials from another address.
                let mut p = peer(&mut rng, g.advertised_credentials(), t);
                let pc = p.local_credentials().clone();
                assert_eq!(g.set_remote(t, pc, &[], Some(1)), RemoteFor::Pending);
                let b = addr("127.0.0.1:40100");
                let ev = run(&mut g, Some((&mut p, b)), t, Duration::from_secs(10));
                let ev: Vec<_> = ev.into_iter().map(|(_, e)| e).collect();
                assert_eq!(ev, vec![IceEvent::Connected(b), IceEvent::Restarted(1)]);
                assert_eq!(g.state(), IceState::Connected);
                assert_eq!(g.generation(), 1);
            } else {
                let ev = run(&mut g, None, t, Duration::from_secs(10));
                assert_eq!(ev.len(), 2, "{ev:?}");
                assert_eq!(ev[0].0, ev[1].0, "together, at the restart timeout");
                assert!(matches!(ev[0].1, IceEvent::RestartFailed(1, _)));
                assert!(matches!(ev[1].1, IceEvent::Failed(_)));
            }
        }
    }

    /// A newer restart supersedes a pending one the peer had answered (generation 2, the first
    /// one's ufrag unrouted); untagged credentials that are the pending generation's go to it, and
    /// the established agent keeps its own.
    #[test]
    fn a_newer_restart_supersedes_an_answered_one() {
        let (mut g, _p, mut rng, t) = connected(2, IceConfig::default());
        let established_remote = g.current().remote_credentials().cloned();
        assert!(matches!(
            g.restart(t),
            IceRestart::Started { generation: 1, .. }
        ));
        let first = g.advertised_credentials().ufrag.clone();
        let answer = IceCredentials::generate(&mut rng);
        // Untagged (a trickle carrying the new credentials, before the tagged answer).
        assert_eq!(
            g.set_remote(t, answer.clone(), &[], None),
            RemoteFor::Pending
        );
        assert_eq!(
            g.current().remote_credentials().cloned(),
            established_remote
        );
        assert_eq!(
            g.restart(t),
            IceRestart::Started {
                generation: 2,
                superseded: Some(1)
            }
        );
        assert_eq!(g.advertised_generation(), Some(2));
        assert_eq!(g.take_retired().map(|r| r.ufrags), Some(vec![first]));
        assert_eq!(g.set_remote(t, answer, &[], Some(1)), RemoteFor::Stale);
    }
}
