//! ICE for one endpoint (RFC 8445 subset, RFC 7675 consent freshness), in either role.
//!
//! The transport has exactly one local candidate (the bridge's shared port, or a participant's
//! socket), so a "pair" is just a remote address. Modes and roles:
//! - [`IceMode::Full`] + [`IceRole::Controlling`]: what JVB is for lib-jitsi-meet (which does not
//!   signal ice-lite): answers checks, sends its own (triggered by the peer's checks, and paced
//!   over signalled candidates), nominates the first valid pair with USE-CANDIDATE.
//! - [`IceMode::Full`] + [`IceRole::Controlled`]: what a browser is opposite JVB: answers checks,
//!   sends its own (and keeps re-checking, slower, until nominated), selects the pair the peer
//!   nominates.
//! - [`IceMode::Lite`]: responder only (RFC 8445 §2.5); the peer controls and nominates.
//!
//! Either way the peer's checks are answered (short-term credentials, MESSAGE-INTEGRITY,
//! FINGERPRINT, XOR-MAPPED-ADDRESS) and unknown source addresses become peer-reflexive pairs.
//! A full agent refreshes consent with its own checks every 5 s ±20 %. An endpoint whose peer
//! stops proving consent for `consent_timeout` is failed.
//!
//! Randomness (credentials, tie-breaker, transaction ids, consent jitter) comes from the
//! injected [`TransportRng`], so the agent is deterministic for a given seed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::{DropCounters, DropReason};
use super::rng::TransportRng;
use super::stun::{self, Builder, Class, METHOD_BINDING, Message};

/// Short-term ICE credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(rng: &mut TransportRng, n: usize) -> String {
    (0..n)
        .map(|_| {
            // 2^32 mod 62 is tiny: the bias is negligible.
            let i = rng.next_u32() as usize % ICE_CHARS.len();
            char::from(ICE_CHARS[i])
        })
        .collect()
}

impl IceCredentials {
    /// Fresh credentials from the OS: 8-char ufrag, 24-char password (RFC 8445 minimums are
    /// 4 / 22).
    pub fn random() -> Self {
        Self::generate(&mut TransportRng::from_entropy())
    }

    /// Fresh credentials drawn from `rng` (deterministic for a seeded generator).
    pub fn generate(rng: &mut TransportRng) -> Self {
        Self {
            ufrag: random_string(rng, 8),
            pwd: random_string(rng, 24),
        }
    }
}

/// Full agent (sends checks and consent checks) or lite (responder only, always controlled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceMode {
    Full,
    Lite,
}

/// Who nominates (RFC 8445 §6.1.1). A lite agent is always controlled, whatever is asked; a role
/// conflict with the peer may switch a full agent's role (§7.3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceRole {
    Controlling,
    Controlled,
}

/// ICE timing and role configuration.
#[derive(Debug, Clone)]
pub struct IceConfig {
    pub mode: IceMode,
    /// The role we start in. The bridge controls (JVB does with lib-jitsi-meet); a participant
    /// is controlled, unless the bridge is lite.
    pub role: IceRole,
    /// Pacing of ordinary checks (Ta).
    pub check_interval: Duration,
    /// Retransmission interval of an unanswered check, and how many times a check is sent.
    pub check_rto: Duration,
    pub check_max_sends: u32,
    /// Interval of consent checks on the selected pair (full mode; jittered ±20 %, RFC 7675 §5.1).
    pub consent_interval: Duration,
    /// No consent for this long → `Disconnected` (recoverable).
    pub disconnected_timeout: Duration,
    /// No consent for this long → `Failed` (terminal). RFC 7675: 30 s.
    pub consent_timeout: Duration,
    /// Not connected this long after the first activity → `Failed`.
    pub connect_timeout: Duration,
    /// An in-place ICE restart whose new generation has not connected this long after it was
    /// asked for is abandoned; the established pair stays (JVB `videobridge.ice.restart.timeout`).
    pub restart_timeout: Duration,
    /// How long the previous generation keeps answering its checks and its addresses keep
    /// passing media after the new one took over (JVB `restart.transition-window`).
    pub restart_transition: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            mode: IceMode::Full,
            role: IceRole::Controlling,
            check_interval: Duration::from_millis(50),
            check_rto: Duration::from_millis(250),
            check_max_sends: 8,
            consent_interval: Duration::from_secs(5),
            disconnected_timeout: Duration::from_secs(10),
            consent_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            restart_timeout: Duration::from_secs(20),
            restart_transition: Duration::from_secs(3),
        }
    }
}

/// A remote candidate from signalling (UDP only; hostnames must be resolved by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteCandidate {
    pub addr: SocketAddr,
    pub priority: u32,
}

/// Connectivity state as the rest of the bridge sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    New,
    Checking,
    Connected,
    Disconnected,
    Failed,
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceEvent {
    /// A pair was selected (first time, or consent came back after `Disconnected`).
    Connected(SocketAddr),
    /// The selected pair changed to another remote address.
    SelectedChanged(SocketAddr),
    Disconnected,
    Failed(String),
    /// An in-place restart's new generation connected and took over (`restart.rs`).
    Restarted(u32),
    /// An in-place restart was abandoned; the established generation stays (`restart.rs`).
    RestartFailed(u32, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PairState {
    Waiting,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Pair {
    addr: SocketAddr,
    priority: u32,
    state: PairState,
    /// A check from the peer arrived on this pair: check it now (triggered check).
    triggered: bool,
}

#[derive(Debug, Clone)]
struct Transaction {
    id: [u8; 12],
    addr: SocketAddr,
    nominate: bool,
    consent: bool,
    sends: u32,
    next_send: Instant,
}

/// A datagram the agent wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunTransmit {
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// The ICE state machine of one endpoint.
pub struct IceAgent {
    cfg: IceConfig,
    local: IceCredentials,
    remote: Option<IceCredentials>,
    controlling: bool,
    tie_breaker: u64,
    pairs: Vec<Pair>,
    transactions: Vec<Transaction>,
    /// Addresses that proved knowledge of the credentials (authenticated request or response).
    validated: Vec<SocketAddr>,
    selected: Option<SocketAddr>,
    nominating: bool,
    state: IceState,
    started: Option<Instant>,
    last_consent: Option<Instant>,
    next_check: Option<Instant>,
    next_consent_check: Option<Instant>,
    events: VecDeque<IceEvent>,
    transmits: VecDeque<StunTransmit>,
    counters: Arc<DropCounters>,
    rng: TransportRng,
    /// Round-robin position of a controlled agent's re-checks while it waits for nomination.
    recheck: usize,
    buf: Vec<u8>,
}

/// PRIORITY we put in our checks: a peer-reflexive candidate of ours (type preference 110).
const OUR_PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;
/// Bound on peer-reflexive pairs one endpoint may create (defence against address spraying).
const MAX_PAIRS: usize = 32;

impl IceAgent {
    /// An agent with `local` credentials in `cfg.role` (a lite agent is controlled whatever the
    /// role); every random value it needs comes from `rng`.
    pub fn new(
        local: IceCredentials,
        cfg: IceConfig,
        counters: Arc<DropCounters>,
        mut rng: TransportRng,
    ) -> Self {
        let tie_breaker = rng.next_u64();
        Self {
            controlling: cfg.mode == IceMode::Full && cfg.role == IceRole::Controlling,
            cfg,
            local,
            remote: None,
            tie_breaker,
            pairs: Vec::new(),
            transactions: Vec::new(),
            validated: Vec::new(),
            selected: None,
            nominating: false,
            state: IceState::New,
            started: None,
            last_consent: None,
            next_check: None,
            next_consent_check: None,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            counters,
            rng,
            recheck: 0,
            buf: Vec::with_capacity(128),
        }
    }

    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local
    }

    pub fn state(&self) -> IceState {
        self.state
    }

    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    fn is_full(&self) -> bool {
        self.cfg.mode == IceMode::Full
    }

    /// The remote address media goes to: the selected pair, or before selection the most
    /// recently validated address (so DTLS can answer a peer that sends before nominating).
    pub fn send_address(&self) -> Option<SocketAddr> {
        self.selected.or_else(|| self.validated.last().copied())
    }

    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// Whether `addr` has authenticated itself with ICE (DTLS/SRTP from anywhere else is dropped).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.validated.contains(&addr)
    }

    /// Every address that authenticated itself, oldest first.
    pub fn validated_addresses(&self) -> &[SocketAddr] {
        &self.validated
    }

    /// The peer's credentials, once signalled.
    pub fn remote_credentials(&self) -> Option<&IceCredentials> {
        self.remote.as_ref()
    }

    /// Whether one of our outstanding checks has this transaction id.
    pub fn has_transaction(&self, id: &[u8; 12]) -> bool {
        self.transactions.iter().any(|t| &t.id == id)
    }

    /// Remote credentials and candidates from signalling. Candidates may be added later (trickle).
    pub fn set_remote(
        &mut self,
        now: Instant,
        remote: IceCredentials,
        candidates: &[RemoteCandidate],
    ) {
        if self.remote.as_ref() != Some(&remote) {
            self.remote = Some(remote);
        }
        for c in candidates {
            self.add_pair(c.addr, c.priority, false);
        }
        self.start(now);
    }

    /// Adds trickled remote candidates.
    pub fn add_remote_candidates(&mut self, now: Instant, candidates: &[RemoteCandidate]) {
        for c in candidates {
            self.add_pair(c.addr, c.priority, false);
        }
        self.start(now);
    }

    fn start(&mut self, now: Instant) {
        if self.started.is_none() {
            self.started = Some(now);
        }
        if self.state == IceState::New {
            self.state = IceState::Checking;
        }
        if self.is_full() && self.next_check.is_none() {
            self.next_check = Some(now);
        }
    }

    fn add_pair(&mut self, addr: SocketAddr, priority: u32, triggered: bool) -> usize {
        if let Some(i) = self.pairs.iter().position(|p| p.addr == addr) {
            if triggered && let Some(p) = self.pairs.get_mut(i) {
                p.triggered = p.state != PairState::Succeeded;
            }
            return i;
        }
        if self.pairs.len() >= MAX_PAIRS {
            // Replace the lowest-priority failed/waiting pair rather than grow without bound.
            if let Some(i) = self.pairs.iter().position(|p| {
                matches!(p.state, PairState::Failed | PairState::Waiting)
                    && Some(p.addr) != self.selected
            }) {
                self.pairs.remove(i);
            } else {
                return 0;
            }
        }
        self.pairs.push(Pair {
            addr,
            priority,
            state: PairState::Waiting,
            triggered,
        });
        // Highest priority first; stable so signalling order breaks ties.
        self.pairs.sort_by_key(|p| std::cmp::Reverse(p.priority));
        self.pairs.iter().position(|p| p.addr == addr).unwrap_or(0)
    }

    fn validate(&mut self, addr: SocketAddr) {
        if !self.validated.contains(&addr) {
            if self.validated.len() >= MAX_PAIRS {
                self.validated.remove(0);
            }
            self.validated.push(addr);
        } else if self.validated.last() != Some(&addr) {
            self.validated.retain(|a| *a != addr);
            self.validated.push(addr);
        }
    }

    /// Handles a STUN datagram from `from` (already routed to this endpoint).
    pub fn handle_stun(&mut self, now: Instant, from: SocketAddr, raw: &[u8]) {
        let msg = match Message::parse(raw) {
            Ok(m) => m,
            Err(_) => {
                self.counters.count(DropReason::StunMalformed);
                return;
            }
        };
        if msg.method != METHOD_BINDING {
            self.counters.count(DropReason::StunUnexpected);
            return;
        }
        if msg.has_fingerprint() && !msg.verify_fingerprint() {
            self.counters.count(DropReason::StunBadFingerprint);
            return;
        }
        match msg.class {
            Class::Request => self.handle_request(now, from, &msg),
            Class::Success | Class::Error => self.handle_response(now, from, &msg),
            Class::Indication => {
                // Binding indications are keepalives; nothing to do (they carry no integrity).
            }
        }
    }

    fn handle_request(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let Some(user) = msg.username() else {
            self.counters.count(DropReason::StunBadIntegrity);
            return;
        };
        let mut parts = user.splitn(2, ':');
        if parts.next() != Some(self.local.ufrag.as_str()) {
            self.counters.count(DropReason::StunBadIntegrity);
            return;
        }
        if !msg.verify_integrity(self.local.pwd.as_bytes()) {
            self.counters.count(DropReason::StunBadIntegrity);
            return;
        }
        if self.is_full() && !self.resolve_role_conflict(now, from, msg) {
            return;
        }
        self.start(now);
        self.validate(from);
        // Consent is per pair (RFC 7675): only the selected pair's traffic refreshes it.
        if self.selected.is_none_or(|s| s == from) {
            self.last_consent = Some(now);
        }
        self.send_success(from, msg);

        let priority = msg.priority().unwrap_or(0);
        // A full agent answers a check with a triggered check of its own (RFC 8445 §7.3.1.4).
        self.add_pair(from, priority, self.is_full());
        if !self.controlling && msg.use_candidate() {
            // Controlled (or lite): the peer nominates. Before that a lite agent answers DTLS on
            // the most recently validated address (`send_address`).
            self.select(now, from);
        } else if self.is_full() && self.needs_pair() {
            self.next_check = Some(now);
        }
        if self.state == IceState::Disconnected && self.selected == Some(from) {
            self.state = IceState::Connected;
            self.events.push_back(IceEvent::Connected(from));
        }
    }

    /// Role conflict (RFC 8445 §7.3.1.1, a procedure of full agents: a lite agent stays
    /// controlled and just answers). Returns false when the request got a 487 answer.
    fn resolve_role_conflict(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) -> bool {
        if self.controlling {
            if let Some(theirs) = msg.ice_controlling() {
                if self.tie_breaker >= theirs {
                    self.send_error(from, msg, 487, "Role Conflict");
                    return false;
                }
                self.controlling = false;
            }
        } else if let Some(theirs) = msg.ice_controlled() {
            if self.tie_breaker >= theirs {
                self.controlling = true;
                self.next_check.get_or_insert(now);
            } else {
                self.send_error(from, msg, 487, "Role Conflict");
                return false;
            }
        }
        true
    }

    fn handle_response(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let Some(ti) = self
            .transactions
            .iter()
            .position(|t| t.id == msg.transaction_id)
        else {
            self.counters.count(DropReason::StunUnexpected);
            return;
        };
        let Some(remote) = &self.remote else {
            self.counters.count(DropReason::StunUnexpected);
            return;
        };
        if !msg.verify_integrity(remote.pwd.as_bytes()) {
            self.counters.count(DropReason::StunBadIntegrity);
            return;
        }
        let t = self.transactions.remove(ti);
        if t.addr != from {
            // RFC 8445 §7.2.5.2.1: non-symmetric response → the check failed.
            self.set_pair_state(t.addr, PairState::Failed);
            return;
        }
        if msg.class == Class::Error {
            if msg.error_code() == Some(487) {
                // We sent the check, so we are a full agent: switch roles and check again.
                self.controlling = !self.controlling;
                self.set_pair_state(t.addr, PairState::Waiting);
                self.next_check = Some(now);
            } else {
                self.set_pair_state(t.addr, PairState::Failed);
            }
            return;
        }
        self.validate(from);
        if self.selected.is_none_or(|s| s == from) {
            self.last_consent = Some(now);
        }
        self.set_pair_state(from, PairState::Succeeded);
        if t.nominate {
            self.nominating = false;
            self.select(now, from);
        } else if self.controlling
            && self.needs_pair()
            && !self.nominating
            && self.selected != Some(from)
        {
            // Nominate the first valid pair (JVB: NominateFirstHostOrReflexiveValid).
            self.nominating = true;
            self.send_check(now, from, true, false);
        }
        if self.state == IceState::Disconnected && self.selected == Some(from) {
            self.state = IceState::Connected;
            self.events.push_back(IceEvent::Connected(from));
        }
    }

    fn set_pair_state(&mut self, addr: SocketAddr, state: PairState) {
        if let Some(p) = self.pairs.iter_mut().find(|p| p.addr == addr) {
            p.state = state;
            p.triggered = false;
        }
    }

    /// No usable selected pair: before selection, or consent lost on the selected one (then a
    /// controlling agent checks and nominates another valid pair, e.g. after a NAT rebinding).
    fn needs_pair(&self) -> bool {
        self.selected.is_none() || self.state == IceState::Disconnected
    }

    fn select(&mut self, now: Instant, addr: SocketAddr) {
        match self.selected {
            Some(a) if a == addr => {}
            Some(_) => {
                self.selected = Some(addr);
                self.next_check = None;
                self.last_consent = Some(now);
                self.events.push_back(IceEvent::SelectedChanged(addr));
                if self.state == IceState::Disconnected {
                    self.state = IceState::Connected;
                    self.events.push_back(IceEvent::Connected(addr));
                }
            }
            None => {
                self.selected = Some(addr);
                self.next_check = None;
                self.state = IceState::Connected;
                self.last_consent = Some(now);
                self.events.push_back(IceEvent::Connected(addr));
                if self.is_full() {
                    self.next_consent_check = Some(now + self.jittered_consent_interval());
                }
            }
        }
    }

    /// 0.8 .. 1.2 of the interval (RFC 7675 §5.1).
    fn jittered_consent_interval(&mut self) -> Duration {
        self.rng.jittered(self.cfg.consent_interval, 0.2)
    }

    fn send_success(&mut self, to: SocketAddr, req: &Message<'_>) {
        let mut buf = std::mem::take(&mut self.buf);
        Builder::new(
            &mut buf,
            Class::Success,
            METHOD_BINDING,
            &req.transaction_id,
        )
        .xor_mapped_address(to)
        .integrity(self.local.pwd.as_bytes())
        .fingerprint();
        self.transmits.push_back(StunTransmit {
            to,
            data: buf.clone(),
        });
        self.buf = buf;
    }

    fn send_error(&mut self, to: SocketAddr, req: &Message<'_>, code: u16, reason: &str) {
        let mut buf = std::mem::take(&mut self.buf);
        Builder::new(&mut buf, Class::Error, METHOD_BINDING, &req.transaction_id)
            .error_code(code, reason)
            .integrity(self.local.pwd.as_bytes())
            .fingerprint();
        self.transmits.push_back(StunTransmit {
            to,
            data: buf.clone(),
        });
        self.buf = buf;
    }

    /// Sends a new check (a new transaction) to `to`.
    fn send_check(&mut self, now: Instant, to: SocketAddr, nominate: bool, consent: bool) {
        let mut id = [0u8; 12];
        self.rng.fill(&mut id);
        self.transactions.push(Transaction {
            id,
            addr: to,
            nominate,
            consent,
            sends: 0,
            next_send: now,
        });
        self.transmit_transaction(now, self.transactions.len() - 1);
        if !consent && let Some(p) = self.pairs.iter_mut().find(|p| p.addr == to) {
            if p.state != PairState::Succeeded {
                p.state = PairState::InProgress;
            }
            p.triggered = false;
        }
    }

    fn transmit_transaction(&mut self, now: Instant, ti: usize) {
        let Some(remote) = self.remote.clone() else {
            return;
        };
        let Some(t) = self.transactions.get_mut(ti) else {
            return;
        };
        t.sends += 1;
        t.next_send = now + self.cfg.check_rto;
        let (id, to, nominate) = (t.id, t.addr, t.nominate);
        let username = format!("{}:{}", remote.ufrag, self.local.ufrag);
        let mut buf = std::mem::take(&mut self.buf);
        {
            let mut b = Builder::new(&mut buf, Class::Request, METHOD_BINDING, &id);
            b.username(&username).priority(OUR_PRFLX_PRIORITY);
            if self.controlling {
                b.ice_controlling(self.tie_breaker);
                if nominate {
                    b.use_candidate();
                }
            } else {
                b.ice_controlled(self.tie_breaker);
            }
            b.integrity(remote.pwd.as_bytes()).fingerprint();
        }
        self.transmits.push_back(StunTransmit {
            to,
            data: buf.clone(),
        });
        self.buf = buf;
    }

    /// Advances timers: paced checks, retransmissions, consent checks, timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == IceState::Failed {
            return;
        }
        // Retransmissions / expiry of our transactions.
        let mut i = 0;
        while i < self.transactions.len() {
            let t = &self.transactions[i];
            if t.next_send > now {
                i += 1;
                continue;
            }
            if t.sends >= self.cfg.check_max_sends {
                let t = self.transactions.remove(i);
                if !t.consent {
                    if t.nominate {
                        self.nominating = false;
                    }
                    if self
                        .pairs
                        .iter()
                        .any(|p| p.addr == t.addr && p.state == PairState::InProgress)
                    {
                        self.set_pair_state(t.addr, PairState::Failed);
                    }
                }
                continue;
            }
            self.transmit_transaction(now, i);
            i += 1;
        }

        // Paced ordinary checks (full agents, before selection or while the selected pair has
        // lost consent).
        if self.is_full()
            && self.remote.is_some()
            && self.needs_pair()
            && let Some(at) = self.next_check
            && at <= now
        {
            let next = self
                .pairs
                .iter()
                .find(|p| p.triggered)
                .or_else(|| self.pairs.iter().find(|p| p.state == PairState::Waiting))
                .map(|p| p.addr);
            if let Some(addr) = next {
                self.send_check(now, addr, false, false);
                self.next_check = Some(now + self.cfg.check_interval);
            } else if self.controlling {
                self.next_check = None;
            } else {
                // Controlled: nothing new to check, so re-check one pair per round (slower)
                // until the peer nominates, keeping our address validated on its side even if
                // it got our candidates late or lost our first checks.
                if let Some(addr) = self.next_recheck() {
                    self.send_check(now, addr, false, false);
                }
                self.next_check = Some(now + self.cfg.check_rto * 2);
            }
        }

        // Consent checks on the selected pair (full agents; a lite agent does not send).
        if self.is_full()
            && let (Some(sel), Some(at)) = (self.selected, self.next_consent_check)
            && at <= now
        {
            let nominate = self.controlling;
            self.send_check(now, sel, nominate, true);
            self.next_consent_check = Some(now + self.jittered_consent_interval());
        }

        // Consent / connect deadlines.
        match self.state {
            IceState::Connected | IceState::Disconnected => {
                let last = self.last_consent.unwrap_or(now);
                let silent = now.saturating_duration_since(last);
                if silent >= self.cfg.consent_timeout {
                    self.fail(format!(
                        "consent expired: peer silent for {} s",
                        silent.as_secs()
                    ));
                } else if silent >= self.cfg.disconnected_timeout
                    && self.state == IceState::Connected
                {
                    self.state = IceState::Disconnected;
                    self.events.push_back(IceEvent::Disconnected);
                    // From now on a full agent checks the other pairs again (a controlling one
                    // nominates another valid pair, e.g. after a NAT rebinding).
                    for p in &mut self.pairs {
                        if Some(p.addr) != self.selected {
                            p.state = PairState::Waiting;
                        }
                    }
                    self.next_check = Some(now);
                }
            }
            IceState::Checking => {
                if let Some(started) = self.started
                    && now.saturating_duration_since(started) >= self.cfg.connect_timeout
                {
                    self.fail("no connectivity: ICE did not complete".into());
                }
            }
            IceState::New | IceState::Failed => {}
        }
    }

    /// The next pair, round robin, with no check of ours in flight.
    fn next_recheck(&mut self) -> Option<SocketAddr> {
        let n = self.pairs.len();
        for k in 0..n {
            let i = (self.recheck + k) % n;
            let addr = self.pairs[i].addr;
            if !self.transactions.iter().any(|t| t.addr == addr) {
                self.recheck = i + 1;
                return Some(addr);
            }
        }
        None
    }

    fn fail(&mut self, reason: String) {
        self.state = IceState::Failed;
        self.transactions.clear();
        self.next_check = None;
        self.next_consent_check = None;
        self.events.push_back(IceEvent::Failed(reason));
    }

    /// Marks the peer alive because an authenticated non-STUN packet (DTLS/SRTP) arrived from
    /// the selected address. Lite agents depend on this and on the peer's checks for consent.
    pub fn note_authenticated_traffic(&mut self, now: Instant, from: SocketAddr) {
        if self.cfg.mode == IceMode::Lite && self.selected == Some(from) {
            self.last_consent = Some(now);
        }
    }

    /// The earliest instant `handle_timeout` must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == IceState::Failed {
            return None;
        }
        let mut t: Option<Instant> = None;
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for tr in &self.transactions {
            consider(Some(tr.next_send));
        }
        if self.is_full() && self.remote.is_some() && self.needs_pair() {
            consider(self.next_check);
        }
        if self.is_full() {
            consider(self.next_consent_check);
        }
        match self.state {
            IceState::Connected | IceState::Disconnected => {
                if let Some(last) = self.last_consent {
                    if self.state == IceState::Connected {
                        consider(Some(last + self.cfg.disconnected_timeout));
                    }
                    consider(Some(last + self.cfg.consent_timeout));
                }
            }
            IceState::Checking => consider(self.started.map(|s| s + self.cfg.connect_timeout)),
            _ => {}
        }
        t
    }

    pub fn poll_transmit(&mut self) -> Option<StunTransmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }
}

/// Returns true if `raw` is a STUN message (cheap pre-check).
pub fn is_stun(raw: &[u8]) -> bool {
    stun::looks_like_stun(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> IceCredentials {
        IceCredentials {
            ufrag: u.into(),
            pwd: p.into(),
        }
    }

    /// A minimal peer: builds checks and answers ours.
    struct Peer {
        creds: IceCredentials,
        bridge: IceCredentials,
    }

    impl Peer {
        fn check(&self, id: u8, controlling: bool, use_candidate: bool) -> Vec<u8> {
            let mut buf = Vec::new();
            let user = format!("{}:{}", self.bridge.ufrag, self.creds.ufrag);
            let mut b = Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[id; 12]);
            b.username(&user).priority(1000);
            if controlling {
                b.ice_controlling(1);
            } else {
                b.ice_controlled(1);
            }
            if use_candidate {
                b.use_candidate();
            }
            b.integrity(self.bridge.pwd.as_bytes()).fingerprint();
            buf
        }

        fn answer(&self, req: &[u8], from: SocketAddr) -> Vec<u8> {
            let m = Message::parse(req).unwrap();
            assert!(m.verify_integrity(self.creds.pwd.as_bytes()));
            assert_eq!(
                m.username().unwrap(),
                format!("{}:{}", self.creds.ufrag, self.bridge.ufrag)
            );
            let mut buf = Vec::new();
            Builder::new(&mut buf, Class::Success, METHOD_BINDING, &m.transaction_id)
                .xor_mapped_address(from)
                .integrity(self.creds.pwd.as_bytes())
                .fingerprint();
            buf
        }
    }

    fn setup(mode: IceMode) -> (IceAgent, Peer, Arc<DropCounters>) {
        let counters = Arc::new(DropCounters::new());
        let local = creds("brdg", "bridgepasswordbridgepass");
        let cfg = IceConfig {
            mode,
            ..IceConfig::default()
        };
        let agent = IceAgent::new(
            local.clone(),
            cfg,
            counters.clone(),
            TransportRng::seeded(1),
        );
        let peer = Peer {
            creds: creds("peer", "peerpasswordpeerpassword"),
            bridge: local,
        };
        (agent, peer, counters)
    }

    const PEER: &str = "127.0.0.1:5555";

    #[test]
    fn answers_checks_and_learns_peer_reflexive_address() {
        let (mut a, peer, counters) = setup(IceMode::Lite);
        let now = Instant::now();
        let from: SocketAddr = PEER.parse().unwrap();
        a.handle_stun(now, from, &peer.check(1, true, false));
        let tx = a.poll_transmit().expect("response");
        assert_eq!(tx.to, from);
        let m = Message::parse(&tx.data).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.transaction_id, [1; 12]);
        assert_eq!(m.xor_mapped_address(), Some(from));
        assert!(m.verify_integrity(peer.bridge.pwd.as_bytes()));
        assert!(m.verify_fingerprint());
        assert!(a.is_validated(from));
        assert_eq!(a.selected(), None);
        // Nomination by the controlling peer selects the pair.
        a.handle_stun(now, from, &peer.check(2, true, true));
        assert_eq!(a.poll_event(), Some(IceEvent::Connected(from)));
        assert_eq!(a.selected(), Some(from));
        assert_eq!(counters.total(), 0);
    }

    #[test]
    fn wrong_credentials_are_rejected_and_counted() {
        let (mut a, peer, counters) = setup(IceMode::Full);
        let now = Instant::now();
        let from: SocketAddr = PEER.parse().unwrap();
        let wrong = Peer {
            creds: peer.creds.clone(),
            bridge: creds("brdg", "not-the-right-password-x"),
        };
        a.handle_stun(now, from, &wrong.check(1, false, false));
        let other_ufrag = Peer {
            creds: peer.creds.clone(),
            bridge: creds("zzzz", "bridgepasswordbridgepass"),
        };
        a.handle_stun(now, from, &other_ufrag.check(2, false, false));
        // No integrity at all.
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[3; 12])
            .username("brdg:peer")
            .fingerprint();
        a.handle_stun(now, from, &buf);
        assert_eq!(counters.get(DropReason::StunBadIntegrity), 3);
        // Bad fingerprint.
        let mut bad = peer.check(4, false, false);
        let n = bad.len();
        bad[n - 1] ^= 0xFF;
        a.handle_stun(now, from, &bad);
        assert_eq!(counters.get(DropReason::StunBadFingerprint), 1);
        // Truncated.
        let good = peer.check(5, false, false);
        a.handle_stun(now, from, &good[..good.len() - 4]);
        assert_eq!(counters.get(DropReason::StunMalformed), 1);
        assert!(a.poll_transmit().is_none());
        assert!(!a.is_validated(from));
        // An unsolicited response.
        let resp = peer.answer(&peer_request(&peer), from);
        a.handle_stun(now, from, &resp);
        assert_eq!(counters.get(DropReason::StunUnexpected), 1);
    }

    fn peer_request(peer: &Peer) -> Vec<u8> {
        // A request as the bridge would send it to the peer (for building a stray response).
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[9; 12])
            .username(&format!("{}:{}", peer.creds.ufrag, peer.bridge.ufrag))
            .integrity(peer.creds.pwd.as_bytes())
            .fingerprint();
        buf
    }

    #[test]
    fn controlling_agent_nominates_first_valid_pair() {
        let (mut a, peer, _) = setup(IceMode::Full);
        let now = Instant::now();
        let from: SocketAddr = PEER.parse().unwrap();
        a.set_remote(
            now,
            peer.creds.clone(),
            &[RemoteCandidate {
                addr: from,
                priority: 100,
            }],
        );
        a.handle_timeout(now);
        let check = a.poll_transmit().expect("ordinary check");
        assert_eq!(check.to, from);
        let m = Message::parse(&check.data).unwrap();
        assert!(m.ice_controlling().is_some());
        assert!(!m.use_candidate());
        a.handle_stun(now, from, &peer.answer(&check.data, from));
        let nom = a.poll_transmit().expect("nomination");
        let m = Message::parse(&nom.data).unwrap();
        assert!(m.use_candidate());
        assert_eq!(a.selected(), None);
        a.handle_stun(now, from, &peer.answer(&nom.data, from));
        assert_eq!(a.poll_event(), Some(IceEvent::Connected(from)));
        assert_eq!(a.state(), IceState::Connected);
    }

    #[test]
    fn triggered_check_toward_peer_reflexive_address() {
        let (mut a, peer, _) = setup(IceMode::Full);
        let now = Instant::now();
        let from: SocketAddr = PEER.parse().unwrap();
        a.set_remote(now, peer.creds.clone(), &[]);
        // Browser (controlled) checks us from an address it never signalled.
        a.handle_stun(now, from, &peer.check(1, false, false));
        let resp = a.poll_transmit().unwrap();
        assert_eq!(Message::parse(&resp.data).unwrap().class, Class::Success);
        a.handle_timeout(now);
        let check = a.poll_transmit().expect("triggered check");
        assert_eq!(check.to, from);
        a.handle_stun(now, from, &peer.answer(&check.data, from));
        let nom = a.poll_transmit().unwrap();
        a.handle_stun(now, from, &peer.answer(&nom.data, from));
        assert_eq!(a.poll_event(), Some(IceEvent::Connected(from)));
    }

    #[test]
    fn consent_timeout_fails_endpoint_in_virtual_time() {
        for mode in [IceMode::Full, IceMode::Lite] {
            let (mut a, peer, _) = setup(mode);
            let start = Instant::now();
            let from: SocketAddr = PEER.parse().unwrap();
            a.set_remote(start, peer.creds.clone(), &[]);
            // Peer-controlled nomination works in both modes when the peer claims controlling
            // with a higher tie-breaker... keep it simple: lite gets USE-CANDIDATE, full nominates.
            if mode == IceMode::Lite {
                a.handle_stun(start, from, &peer.check(1, true, true));
                while a.poll_transmit().is_some() {}
            } else {
                a.handle_stun(start, from, &peer.check(1, false, false));
                a.handle_timeout(start);
                while let Some(tx) = a.poll_transmit() {
                    if Message::parse(&tx.data).unwrap().class == Class::Request {
                        a.handle_stun(start, from, &peer.answer(&tx.data, from));
                    }
                }
                while let Some(tx) = a.poll_transmit() {
                    if Message::parse(&tx.data).unwrap().class == Class::Request {
                        a.handle_stun(start, from, &peer.answer(&tx.data, from));
                    }
                }
            }
            assert_eq!(a.poll_event(), Some(IceEvent::Connected(from)), "{mode:?}");
            // The peer goes silent: step virtual time by whatever poll_timeout asks for.
            let mut now = start;
            let mut events = Vec::new();
            let mut consent_checks = 0;
            while now < start + Duration::from_secs(60) {
                let Some(next) = a.poll_timeout() else { break };
                assert!(next >= now, "timer in the past");
                now = next;
                a.handle_timeout(now);
                while let Some(tx) = a.poll_transmit() {
                    assert_eq!(tx.to, from);
                    consent_checks += 1;
                }
                while let Some(e) = a.poll_event() {
                    events.push((now.duration_since(start), e));
                }
            }
            assert_eq!(events.len(), 2, "{mode:?}: {events:?}");
            assert_eq!(events[0].1, IceEvent::Disconnected);
            assert!(
                events[0].0 >= Duration::from_secs(10) && events[0].0 < Duration::from_secs(11)
            );
            assert!(matches!(events[1].1, IceEvent::Failed(_)));
            assert!(
                events[1].0 >= Duration::from_secs(30) && events[1].0 < Duration::from_secs(31)
            );
            assert_eq!(a.state(), IceState::Failed);
            if mode == IceMode::Full {
                assert!(consent_checks >= 5, "consent checks sent: {consent_checks}");
            } else {
                assert_eq!(consent_checks, 0);
            }
        }
    }

    #[test]
    fn consent_kept_alive_by_responses() {
        let (mut a, peer, _) = setup(IceMode::Full);
        let start = Instant::now();
        let from: SocketAddr = PEER.parse().unwrap();
        a.set_remote(
            start,
            peer.creds.clone(),
            &[RemoteCandidate {
                addr: from,
                priority: 1,
            }],
        );
        let mut now = start;
        let mut events = Vec::new();
        while now < start + Duration::from_secs(120) {
            a.handle_timeout(now);
            while let Some(tx) = a.poll_transmit() {
                a.handle_stun(now, from, &peer.answer(&tx.data, from));
            }
            while let Some(e) = a.poll_event() {
                events.push(e);
            }
            now = a.poll_timeout().unwrap();
        }
        assert_eq!(events, vec![IceEvent::Connected(from)]);
        assert_eq!(a.state(), IceState::Connected);
    }

    #[test]
    fn controlling_agent_moves_to_a_new_address_after_consent_loss() {
        let (mut a, peer, _) = setup(IceMode::Full);
        let start = Instant::now();
        let old: SocketAddr = PEER.parse().unwrap();
        let new: SocketAddr = "127.0.0.1:6666".parse().unwrap();
        a.set_remote(
            start,
            peer.creds.clone(),
            &[RemoteCandidate {
                addr: old,
                priority: 1,
            }],
        );
        let mut now = start;
        let mut events = Vec::new();
        let mut answer_old = true;
        while now < start + Duration::from_secs(40) {
            a.handle_timeout(now);
            while let Some(tx) = a.poll_transmit() {
                let m = Message::parse(&tx.data).unwrap();
                if m.class != Class::Request {
                    continue;
                }
                if (tx.to == old && answer_old) || tx.to == new {
                    a.handle_stun(now, tx.to, &peer.answer(&tx.data, tx.to));
                }
            }
            while let Some(e) = a.poll_event() {
                events.push(e);
            }
            // At 5 s the peer moves: the old address goes silent, the new one starts checking.
            if now >= start + Duration::from_secs(5) {
                answer_old = false;
                if now.duration_since(start).as_millis() % 2000 < 300 {
                    a.handle_stun(now, new, &peer.check(3, false, false));
                }
            }
            now = a
                .poll_timeout()
                .unwrap()
                .min(now + Duration::from_millis(250));
        }
        assert_eq!(
            events,
            vec![
                IceEvent::Connected(old),
                IceEvent::Disconnected,
                IceEvent::SelectedChanged(new),
                IceEvent::Connected(new)
            ]
        );
        assert_eq!(a.selected(), Some(new));
        assert_eq!(a.state(), IceState::Connected);
    }

    #[test]
    fn connect_timeout_fails() {
        let (mut a, peer, _) = setup(IceMode::Full);
        let start = Instant::now();
        a.set_remote(
            start,
            peer.creds.clone(),
            &[RemoteCandidate {
                addr: PEER.parse().unwrap(),
                priority: 1,
            }],
        );
        let mut now = start;
        while let Some(t) = a.poll_timeout() {
            now = t;
            a.handle_timeout(now);
            while a.poll_transmit().is_some() {}
        }
        assert!(matches!(a.poll_event(), Some(IceEvent::Failed(_))));
        assert_eq!(now.duration_since(start), Duration::from_secs(30));
    }

    #[test]
    fn role_conflict_resolved_by_tie_breaker() {
        let (mut a, peer, _) = setup(IceMode::Full);
        let now = Instant::now();
        let from: SocketAddr = PEER.parse().unwrap();
        a.tie_breaker = 0; // the peer (tie-breaker 1) wins
        a.handle_stun(now, from, &peer.check(1, true, false));
        assert!(!a.is_controlling());
        let (mut b, peer, _) = setup(IceMode::Full);
        b.tie_breaker = u64::MAX; // we win: 487
        b.handle_stun(now, from, &peer.check(1, true, false));
        let tx = b.poll_transmit().unwrap();
        let m = Message::parse(&tx.data).unwrap();
        assert_eq!(m.class, Class::Error);
        assert_eq!(m.error_code(), Some(487));
        assert!(b.is_controlling());
        // A lite agent does not repair conflicts (RFC 8445 §7.3.1.1 is for full agents): a
        // check claiming controlled is answered, and the agent stays controlled and silent.
        let (mut c, peer, _) = setup(IceMode::Lite);
        c.tie_breaker = u64::MAX;
        c.set_remote(now, peer.creds.clone(), &[]);
        c.handle_stun(now, from, &peer.check(1, false, false));
        let tx = c.poll_transmit().unwrap();
        assert_eq!(Message::parse(&tx.data).unwrap().class, Class::Success);
        assert!(!c.is_controlling());
        c.handle_timeout(now + Duration::from_secs(1));
        assert!(c.poll_transmit().is_none());
        // A controlled full agent with the higher tie-breaker takes control.
        let mut d = IceAgent::new(
            peer.bridge.clone(),
            IceConfig {
                role: IceRole::Controlled,
                ..IceConfig::default()
            },
            Arc::new(DropCounters::new()),
            TransportRng::seeded(2),
        );
        d.tie_breaker = u64::MAX;
        d.handle_stun(now, from, &peer.check(1, false, false));
        assert!(d.is_controlling());
    }

    // ---- The controlled role (a participant opposite the bridge) against a controlling agent.

    const BRIDGE: &str = "127.0.0.1:10000";
    const US: &str = "127.0.0.1:40000";

    /// A controlling full agent (the bridge) and a controlled one (the participant), each knowing
    /// the other's credentials and candidate, as after the Jingle offer/answer.
    fn both_roles(seed: u64) -> (IceAgent, IceAgent, Arc<DropCounters>, Instant) {
        let now = Instant::now();
        let mut rng = TransportRng::seeded(seed);
        let (bridge_creds, our_creds) = (
            IceCredentials::generate(&mut rng),
            IceCredentials::generate(&mut rng),
        );
        let mut bridge = IceAgent::new(
            bridge_creds.clone(),
            IceConfig::default(),
            Arc::new(DropCounters::new()),
            rng.fork(),
        );
        bridge.set_remote(
            now,
            our_creds.clone(),
            &[RemoteCandidate {
                addr: US.parse().unwrap(),
                priority: 2_130_706_431,
            }],
        );
        let counters = Arc::new(DropCounters::new());
        let controlled = IceConfig {
            role: IceRole::Controlled,
            ..IceConfig::default()
        };
        let mut ours = IceAgent::new(our_creds, controlled, counters.clone(), rng.fork());
        ours.set_remote(
            now,
            bridge_creds,
            &[RemoteCandidate {
                addr: BRIDGE.parse().unwrap(),
                priority: 2_130_706_431,
            }],
        );
        (ours, bridge, counters, now)
    }

    /// Moves datagrams both ways until quiet; returns the controlled agent's events.
    fn exchange(ours: &mut IceAgent, bridge: &mut IceAgent, now: Instant) -> Vec<IceEvent> {
        let (us, br): (SocketAddr, SocketAddr) = (US.parse().unwrap(), BRIDGE.parse().unwrap());
        let mut events = Vec::new();
        for _ in 0..50 {
            let mut moved = false;
            while let Some(t) = ours.poll_transmit() {
                assert_eq!(t.to, br);
                bridge.handle_stun(now, us, &t.data);
                moved = true;
            }
            while let Some(t) = bridge.poll_transmit() {
                assert_eq!(t.to, us);
                ours.handle_stun(now, br, &t.data);
                moved = true;
            }
            while let Some(e) = ours.poll_event() {
                events.push(e);
            }
            if !moved {
                break;
            }
        }
        events
    }

    #[test]
    fn controlled_agent_connects_when_the_controlling_agent_nominates() {
        let (mut ours, mut bridge, counters, t0) = both_roles(5);
        assert!(!ours.is_controlling() && bridge.is_controlling());
        let mut now = t0;
        let mut events = Vec::new();
        while now < t0 + Duration::from_secs(2) && ours.state() != IceState::Connected {
            ours.handle_timeout(now);
            bridge.handle_timeout(now);
            events.extend(exchange(&mut ours, &mut bridge, now));
            now += Duration::from_millis(10);
        }
        let (us, br): (SocketAddr, SocketAddr) = (US.parse().unwrap(), BRIDGE.parse().unwrap());
        assert_eq!(events, vec![IceEvent::Connected(br)]);
        assert_eq!(ours.selected(), Some(br));
        assert!(ours.is_validated(br));
        assert_eq!(bridge.poll_event(), Some(IceEvent::Connected(us)));
        assert_eq!(bridge.selected(), Some(us));
        // No role conflict: the roles stayed as configured.
        assert!(!ours.is_controlling() && bridge.is_controlling());
        assert_eq!(counters.total(), 0);
    }

    #[test]
    fn controlled_agent_sends_consent_checks_and_fails_when_the_peer_goes_silent() {
        let (mut ours, mut bridge, _, t0) = both_roles(6);
        let mut now = t0;
        while ours.state() != IceState::Connected {
            ours.handle_timeout(now);
            bridge.handle_timeout(now);
            exchange(&mut ours, &mut bridge, now);
            now += Duration::from_millis(10);
        }
        // 60 s with the bridge answering: still connected, consent checks were sent.
        let (us, br): (SocketAddr, SocketAddr) = (US.parse().unwrap(), BRIDGE.parse().unwrap());
        let mut sent = 0;
        let end = now + Duration::from_secs(60);
        while now < end {
            ours.handle_timeout(now);
            bridge.handle_timeout(now);
            while let Some(t) = ours.poll_transmit() {
                if Message::parse(&t.data).is_ok_and(|m| m.class == Class::Request) {
                    sent += 1;
                }
                bridge.handle_stun(now, us, &t.data);
            }
            while let Some(t) = bridge.poll_transmit() {
                ours.handle_stun(now, br, &t.data);
            }
            assert_eq!(ours.state(), IceState::Connected, "at {:?}", now - t0);
            now += Duration::from_millis(100);
        }
        assert!(
            (9..=16).contains(&sent),
            "≈ one consent check per 5 s: {sent}"
        );
        // Now the bridge goes silent.
        let silent_from = now;
        let mut failed_at = None;
        while now < silent_from + Duration::from_secs(40) {
            ours.handle_timeout(now);
            while ours.poll_transmit().is_some() {}
            while let Some(e) = ours.poll_event() {
                if matches!(e, IceEvent::Failed(_)) {
                    failed_at = Some(now - silent_from);
                }
            }
            now += Duration::from_millis(100);
        }
        // 30 s after the last answer, which came at most one consent interval before the silence.
        let at = failed_at.expect("consent failure");
        assert!(
            at >= Duration::from_secs(23) && at <= Duration::from_secs(31),
            "{at:?}"
        );
    }

    #[test]
    fn controlled_agent_keeps_checking_until_the_connect_timeout() {
        let (mut ours, _bridge, _, t0) = both_roles(7);
        let mut t = t0;
        let mut sent = 0;
        while ours.state() == IceState::Checking {
            t = ours.poll_timeout().expect("a timer while checking");
            ours.handle_timeout(t);
            while ours.poll_transmit().is_some() {
                sent += 1;
            }
        }
        assert_eq!(ours.state(), IceState::Failed);
        assert_eq!(t - t0, Duration::from_secs(30));
        // New checks all along (not only the first transaction's 8 sends).
        assert!(sent > 30, "kept checking: {sent}");
    }

    #[test]
    fn controlled_agent_refuses_forged_checks() {
        let (mut ours, _bridge, counters, now) = both_roles(8);
        let br: SocketAddr = BRIDGE.parse().unwrap();
        let user = format!("{}:x", ours.local_credentials().ufrag);
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[1; 12])
            .username(&user)
            .ice_controlling(1)
            .use_candidate()
            .integrity(b"wrong-password-wrong-pw")
            .fingerprint();
        ours.handle_stun(now, br, &buf);
        assert_eq!(counters.get(DropReason::StunBadIntegrity), 1);
        assert!(ours.selected().is_none() && !ours.is_validated(br));
        assert!(ours.poll_event().is_none());
    }

    #[test]
    fn same_seed_same_credentials_tie_breaker_and_transaction_ids() {
        let run = |seed| {
            let (mut ours, _, _, t0) = both_roles(seed);
            ours.handle_timeout(t0);
            let t = ours.poll_transmit().unwrap();
            (ours.local_credentials().clone(), ours.tie_breaker, t.data)
        };
        assert_eq!(run(9), run(9));
        let (a, b) = (run(9), run(10));
        assert_ne!(a.0, b.0);
        assert_ne!(a.1, b.1);
        assert_ne!(a.2, b.2);
    }
}
