//! ICE of a participant toward the bridge: a full agent in the controlled role (RFC 8445) with
//! consent freshness (RFC 7675) — what Chromium does opposite JVB, which is controlling and nominates.
//!
//! The participant has one host candidate (its socket) and the bridge signals one or a few. We
//! answer the bridge's checks, send our own checks to every signalled candidate (so the pair is
//! validated from our side too, and the bridge learns our address early), select the pair the
//! bridge nominates with USE-CANDIDATE, and then send a consent check every ≈5 s. No consent for
//! 10 s is `Disconnected`, for 30 s `Failed`.
//!
//! STUN encoding and MESSAGE-INTEGRITY/FINGERPRINT are the bridge's (`bridge::transport::stun`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bridge::transport::ice::IceCredentials;
use bridge::transport::stun::{Builder, Class, METHOD_BINDING, Message};
use ring::rand::{SecureRandom, SystemRandom};

/// Timers of the agent (Chromium-like defaults).
#[derive(Debug, Clone)]
pub struct IceConfig {
    /// Pacing of new checks before a pair is selected (Ta).
    pub check_interval: Duration,
    /// Retransmission interval of an unanswered check, and how many times it is sent.
    pub check_rto: Duration,
    pub check_max_sends: u32,
    /// Consent checks on the selected pair (jittered ±20 %).
    pub consent_interval: Duration,
    pub disconnected_timeout: Duration,
    pub consent_timeout: Duration,
    /// No selected pair this long after start → `Failed`.
    pub connect_timeout: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        IceConfig {
            check_interval: Duration::from_millis(50),
            check_rto: Duration::from_millis(250),
            check_max_sends: 7,
            consent_interval: Duration::from_secs(5),
            disconnected_timeout: Duration::from_secs(10),
            consent_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Connectivity as the participant sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceState {
    Checking,
    Connected,
    Disconnected,
    Failed,
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceEvent {
    /// The bridge nominated this address (first time, or consent came back).
    Connected(SocketAddr),
    Disconnected,
    Failed(String),
}

/// Counters of what the agent refused (a healthy run has zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceDrops {
    pub malformed: u64,
    pub bad_integrity: u64,
    pub unexpected: u64,
    pub role_conflicts: u64,
}

#[derive(Debug, Clone)]
struct Transaction {
    id: [u8; 12],
    to: SocketAddr,
    sends: u32,
    next_send: Instant,
}

/// Priority of our host candidate as signalled (type preference 126, component 1).
pub const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;
/// PRIORITY in our checks: a peer-reflexive candidate of ours (type preference 110).
const PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | 255;

/// The controlled ICE agent of one participant.
pub struct ClientIce {
    cfg: IceConfig,
    local: IceCredentials,
    remote: IceCredentials,
    /// Signalled remote candidates, highest priority first.
    candidates: Vec<SocketAddr>,
    /// Index of the next candidate to check while unselected.
    next_candidate: usize,
    tie_breaker: u64,
    state: IceState,
    selected: Option<SocketAddr>,
    /// Addresses that proved knowledge of the credentials.
    validated: Vec<SocketAddr>,
    transactions: Vec<Transaction>,
    started: Instant,
    next_check: Option<Instant>,
    next_consent: Option<Instant>,
    last_consent: Option<Instant>,
    events: VecDeque<IceEvent>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    rng: SystemRandom,
    buf: Vec<u8>,
    pub drops: IceDrops,
}

impl ClientIce {
    /// Starts checking `candidates` (the bridge's, in signalled priority order) at `now`.
    pub fn new(
        now: Instant,
        local: IceCredentials,
        remote: IceCredentials,
        candidates: Vec<SocketAddr>,
        cfg: IceConfig,
    ) -> Self {
        let rng = SystemRandom::new();
        let mut tie = [0u8; 8];
        let _ = rng.fill(&mut tie);
        ClientIce {
            cfg,
            local,
            remote,
            candidates,
            next_candidate: 0,
            tie_breaker: u64::from_be_bytes(tie),
            state: IceState::Checking,
            selected: None,
            validated: Vec::new(),
            transactions: Vec::new(),
            started: now,
            next_check: Some(now),
            next_consent: None,
            last_consent: None,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            rng,
            buf: Vec::with_capacity(128),
            drops: IceDrops::default(),
        }
    }

    pub fn state(&self) -> IceState {
        self.state
    }

    pub fn local_credentials(&self) -> &IceCredentials {
        &self.local
    }

    /// The address media and DTLS go to: the nominated one.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    /// Whether `addr` proved knowledge of the ICE credentials (media from elsewhere is dropped).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.validated.contains(&addr)
    }

    /// Handles a STUN datagram from `from`.
    pub fn handle_stun(&mut self, now: Instant, from: SocketAddr, raw: &[u8]) {
        let Ok(msg) = Message::parse(raw) else {
            self.drops.malformed += 1;
            return;
        };
        if msg.method != METHOD_BINDING || (msg.has_fingerprint() && !msg.verify_fingerprint()) {
            self.drops.malformed += 1;
            return;
        }
        match msg.class {
            Class::Request => self.handle_request(now, from, &msg),
            Class::Success | Class::Error => self.handle_response(now, from, &msg),
            Class::Indication => {}
        }
    }

    fn handle_request(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let ours = msg
            .username()
            .and_then(|u| u.split(':').next())
            .is_some_and(|u| u == self.local.ufrag);
        if !ours || !msg.verify_integrity(self.local.pwd.as_bytes()) {
            self.drops.bad_integrity += 1;
            return;
        }
        if msg.ice_controlled().is_some() {
            // Both controlled: we stay controlled (the bridge is the controlling agent).
            self.drops.role_conflicts += 1;
            self.reply(from, msg, Some(487));
            return;
        }
        self.validate(from);
        self.reply(from, msg, None);
        if self.selected.is_none_or(|s| s == from) {
            self.last_consent = Some(now);
        }
        if msg.use_candidate() {
            self.select(now, from);
        } else if self.state == IceState::Disconnected && self.selected == Some(from) {
            self.reconnected(from);
        }
    }

    fn handle_response(&mut self, now: Instant, from: SocketAddr, msg: &Message<'_>) {
        let Some(i) = self
            .transactions
            .iter()
            .position(|t| t.id == msg.transaction_id)
        else {
            self.drops.unexpected += 1;
            return;
        };
        if !msg.verify_integrity(self.remote.pwd.as_bytes()) {
            self.drops.bad_integrity += 1;
            return;
        }
        let t = self.transactions.remove(i);
        if msg.class == Class::Error || t.to != from {
            if msg.error_code() == Some(487) {
                self.drops.role_conflicts += 1;
            }
            return;
        }
        self.validate(from);
        if self.selected.is_none_or(|s| s == from) {
            self.last_consent = Some(now);
            if self.state == IceState::Disconnected {
                self.reconnected(from);
            }
        }
    }

    fn reconnected(&mut self, addr: SocketAddr) {
        self.state = IceState::Connected;
        self.events.push_back(IceEvent::Connected(addr));
    }

    fn validate(&mut self, addr: SocketAddr) {
        if !self.validated.contains(&addr) {
            self.validated.push(addr);
        }
    }

    fn select(&mut self, now: Instant, addr: SocketAddr) {
        if self.selected == Some(addr) && self.state == IceState::Connected {
            return;
        }
        let first = self.selected.is_none();
        self.selected = Some(addr);
        self.state = IceState::Connected;
        self.last_consent = Some(now);
        self.next_check = None;
        if first {
            self.next_consent = Some(now + self.jittered(self.cfg.consent_interval));
        }
        self.events.push_back(IceEvent::Connected(addr));
    }

    fn jittered(&self, d: Duration) -> Duration {
        let mut b = [0u8; 1];
        let _ = self.rng.fill(&mut b);
        d.mul_f64(0.8 + 0.4 * f64::from(b[0]) / 255.0)
    }

    fn reply(&mut self, to: SocketAddr, req: &Message<'_>, error: Option<u16>) {
        let mut buf = std::mem::take(&mut self.buf);
        {
            let class = if error.is_some() {
                Class::Error
            } else {
                Class::Success
            };
            let mut b = Builder::new(&mut buf, class, METHOD_BINDING, &req.transaction_id);
            match error {
                Some(code) => b.error_code(code, "Role Conflict"),
                None => b.xor_mapped_address(to),
            };
            b.integrity(self.local.pwd.as_bytes()).fingerprint();
        }
        self.transmits.push_back((to, buf.clone()));
        self.buf = buf;
    }

    fn send_check(&mut self, now: Instant, to: SocketAddr) {
        let mut id = [0u8; 12];
        let _ = self.rng.fill(&mut id);
        self.transactions.push(Transaction {
            id,
            to,
            sends: 0,
            next_send: now,
        });
        let last = self.transactions.len() - 1;
        self.transmit(now, last);
    }

    fn transmit(&mut self, now: Instant, i: usize) {
        let Some(t) = self.transactions.get_mut(i) else {
            return;
        };
        t.sends += 1;
        t.next_send = now + self.cfg.check_rto;
        let (id, to) = (t.id, t.to);
        let username = format!("{}:{}", self.remote.ufrag, self.local.ufrag);
        let mut buf = std::mem::take(&mut self.buf);
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &id)
            .username(&username)
            .priority(PRFLX_PRIORITY)
            .ice_controlled(self.tie_breaker)
            .integrity(self.remote.pwd.as_bytes())
            .fingerprint();
        self.transmits.push_back((to, buf.clone()));
        self.buf = buf;
    }

    /// Advances retransmissions, pacing, consent and deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == IceState::Failed {
            return;
        }
        let mut i = 0;
        while i < self.transactions.len() {
            let t = &self.transactions[i];
            if t.next_send > now {
                i += 1;
            } else if t.sends >= self.cfg.check_max_sends {
                self.transactions.remove(i);
            } else {
                self.transmit(now, i);
                i += 1;
            }
        }
        if self.selected.is_none()
            && let Some(at) = self.next_check
            && at <= now
        {
            if let Some(&to) = self.candidates.get(self.next_candidate) {
                if !self.transactions.iter().any(|t| t.to == to) {
                    self.send_check(now, to);
                }
                self.next_candidate = (self.next_candidate + 1) % self.candidates.len();
            }
            // Keep checking (slowly once every candidate had its turn) until the bridge nominates.
            let wrapped = self.next_candidate == 0;
            self.next_check = Some(
                now + if wrapped {
                    self.cfg.check_rto * 2
                } else {
                    self.cfg.check_interval
                },
            );
        }
        if let (Some(sel), Some(at)) = (self.selected, self.next_consent)
            && at <= now
        {
            self.send_check(now, sel);
            self.next_consent = Some(now + self.jittered(self.cfg.consent_interval));
        }
        match self.state {
            IceState::Connected | IceState::Disconnected => {
                let silent = now.saturating_duration_since(self.last_consent.unwrap_or(now));
                if silent >= self.cfg.consent_timeout {
                    self.fail(format!(
                        "consent expired: bridge silent for {} s",
                        silent.as_secs()
                    ));
                } else if silent >= self.cfg.disconnected_timeout
                    && self.state == IceState::Connected
                {
                    self.state = IceState::Disconnected;
                    self.events.push_back(IceEvent::Disconnected);
                }
            }
            IceState::Checking => {
                if now.saturating_duration_since(self.started) >= self.cfg.connect_timeout {
                    self.fail("ICE did not connect: the bridge never nominated a pair".into());
                }
            }
            IceState::Failed => {}
        }
    }

    fn fail(&mut self, reason: String) {
        self.state = IceState::Failed;
        self.transactions.clear();
        self.next_check = None;
        self.next_consent = None;
        self.events.push_back(IceEvent::Failed(reason));
    }

    /// Authenticated media from the selected address also proves the bridge is alive.
    pub fn note_authenticated_traffic(&mut self, now: Instant, from: SocketAddr) {
        if self.selected == Some(from) {
            self.last_consent = Some(now);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == IceState::Failed {
            return None;
        }
        let deadline = match self.state {
            IceState::Checking => Some(self.started + self.cfg.connect_timeout),
            IceState::Connected => self.last_consent.map(|l| l + self.cfg.disconnected_timeout),
            IceState::Disconnected => self.last_consent.map(|l| l + self.cfg.consent_timeout),
            IceState::Failed => None,
        };
        let next_check = if self.selected.is_none() {
            self.next_check
        } else {
            None
        };
        self.transactions
            .iter()
            .map(|t| t.next_send)
            .chain(
                [deadline, next_check, self.next_consent]
                    .into_iter()
                    .flatten(),
            )
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::transport::DropCounters;
    use bridge::transport::ice::{IceAgent, IceConfig as BridgeIceConfig, IceEvent as BridgeEvent};
    use std::sync::Arc;

    const BRIDGE: &str = "127.0.0.1:10000";
    const US: &str = "127.0.0.1:40000";

    fn creds(u: &str) -> IceCredentials {
        IceCredentials {
            ufrag: u.into(),
            pwd: format!("{u}-password-password-pw"),
        }
    }

    /// Runs our agent against the bridge's real (controlling) agent in virtual time.
    fn pair() -> (ClientIce, IceAgent, Instant) {
        let now = Instant::now();
        let bridge_creds = creds("brdg");
        let our_creds = creds("ours");
        let mut bridge = IceAgent::new(
            bridge_creds.clone(),
            BridgeIceConfig::default(),
            Arc::new(DropCounters::new()),
        );
        bridge.set_remote(
            now,
            our_creds.clone(),
            &[bridge::transport::RemoteCandidate {
                addr: US.parse().unwrap(),
                priority: HOST_PRIORITY,
            }],
        );
        let ours = ClientIce::new(
            now,
            our_creds,
            bridge_creds,
            vec![BRIDGE.parse().unwrap()],
            IceConfig::default(),
        );
        (ours, bridge, now)
    }

    /// Moves datagrams both ways until quiet; returns our events.
    fn exchange(ours: &mut ClientIce, bridge: &mut IceAgent, now: Instant) -> Vec<IceEvent> {
        let (us, br): (SocketAddr, SocketAddr) = (US.parse().unwrap(), BRIDGE.parse().unwrap());
        let mut events = Vec::new();
        for _ in 0..50 {
            let mut moved = false;
            while let Some((to, d)) = ours.poll_transmit() {
                assert_eq!(to, br);
                bridge.handle_stun(now, us, &d);
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
    fn connects_with_the_bridge_agent_which_nominates() {
        let (mut ours, mut bridge, t0) = pair();
        let mut now = t0;
        let mut events = Vec::new();
        while now < t0 + Duration::from_secs(2) && ours.state() != IceState::Connected {
            ours.handle_timeout(now);
            bridge.handle_timeout(now);
            events.extend(exchange(&mut ours, &mut bridge, now));
            now += Duration::from_millis(10);
        }
        let br: SocketAddr = BRIDGE.parse().unwrap();
        assert_eq!(events, vec![IceEvent::Connected(br)]);
        assert_eq!(ours.selected(), Some(br));
        assert!(ours.is_validated(br));
        let mut bridge_connected = false;
        while let Some(e) = bridge.poll_event() {
            bridge_connected |= matches!(e, BridgeEvent::Connected(_));
        }
        assert!(bridge_connected, "the bridge selected our address too");
        assert!(!bridge.is_controlling() || bridge.selected().is_some());
        assert_eq!(ours.drops, IceDrops::default());
    }

    #[test]
    fn consent_checks_keep_the_pair_alive_and_silence_fails_it() {
        let (mut ours, mut bridge, t0) = pair();
        let mut now = t0;
        while ours.state() != IceState::Connected {
            ours.handle_timeout(now);
            bridge.handle_timeout(now);
            exchange(&mut ours, &mut bridge, now);
            now += Duration::from_millis(10);
        }
        // 60 s with the bridge answering: still connected, consent checks were sent.
        let mut sent = 0;
        let end = now + Duration::from_secs(60);
        while now < end {
            ours.handle_timeout(now);
            bridge.handle_timeout(now);
            while let Some((_, d)) = ours.poll_transmit() {
                if Message::parse(&d).is_ok_and(|m| m.class == Class::Request) {
                    sent += 1;
                }
                bridge.handle_stun(now, US.parse().unwrap(), &d);
            }
            while let Some(t) = bridge.poll_transmit() {
                ours.handle_stun(now, BRIDGE.parse().unwrap(), &t.data);
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
    fn forged_or_foreign_stun_is_refused() {
        let (mut ours, _bridge, now) = pair();
        let br: SocketAddr = BRIDGE.parse().unwrap();
        // A check with the wrong password.
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[1; 12])
            .username("ours:brdg")
            .ice_controlling(1)
            .use_candidate()
            .integrity(b"wrong-password-wrong-pw")
            .fingerprint();
        ours.handle_stun(now, br, &buf);
        assert_eq!(ours.drops.bad_integrity, 1);
        assert!(ours.selected().is_none());
        // A check for another ufrag.
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[2; 12])
            .username("else:brdg")
            .integrity(creds("ours").pwd.as_bytes())
            .fingerprint();
        ours.handle_stun(now, br, &buf);
        assert_eq!(ours.drops.bad_integrity, 2);
        // A response to nothing, garbage, truncation: counted, no panic.
        Builder::new(&mut buf, Class::Success, METHOD_BINDING, &[3; 12])
            .integrity(creds("brdg").pwd.as_bytes())
            .fingerprint();
        ours.handle_stun(now, br, &buf);
        assert_eq!(ours.drops.unexpected, 1);
        for n in 0..buf.len() {
            ours.handle_stun(now, br, &buf[..n]);
        }
        assert!(ours.drops.malformed >= 1);
        assert!(ours.poll_event().is_none());
    }

    #[test]
    fn never_nominated_fails_after_the_connect_timeout() {
        let now = Instant::now();
        let mut ours = ClientIce::new(
            now,
            creds("ours"),
            creds("brdg"),
            vec![BRIDGE.parse().unwrap()],
            IceConfig::default(),
        );
        let mut t = now;
        let mut sent = 0;
        while ours.state() == IceState::Checking {
            t = ours.poll_timeout().expect("a timer while checking");
            ours.handle_timeout(t);
            while ours.poll_transmit().is_some() {
                sent += 1;
            }
        }
        assert_eq!(ours.state(), IceState::Failed);
        assert!(t - now >= Duration::from_secs(30));
        assert!(sent > 10, "kept checking: {sent}");
    }
}
