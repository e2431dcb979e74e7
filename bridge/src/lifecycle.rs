//! The bridge's lifecycle: drain mode and graceful shutdown, as JVB's ShutdownManager does it.
//!
//! ```text
//! RUNNING ──graceful request──▶ GRACEFUL_SHUTDOWN ──endpoints ≤ min, or max duration──▶ SHUTTING_DOWN
//!    │                          (new conferences refused;                               (focus moves the
//!    └──non-graceful request─────────────────────────────────────────────────────────▶  participants)
//!                                                                                        │ shutting-down delay
//!                                                                                        ▼
//!                                                                                     STOPPED (exit 0)
//! ```
//!
//! `graceful_shutdown` and `shutting_down` are sticky flags published in `/colibri/stats`, `/metrics`
//! and brewery presence: once set they stay set until the process exits (so in SHUTTING_DOWN after a
//! graceful request both are true, as in JVB). Drain mode is independent: it only asks the focus to
//! prefer other bridges.
//!
//! [`Lifecycle`] is the sans-IO state machine; [`LifecycleDriver`] is the thin async shell that feeds it
//! commands, timers and the endpoint count; [`LifecycleHandle`] is what the REST API, the signal handler
//! and the COLIBRI2 handler hold.
//!
//! Difference from JVB: JVB refuses new conferences only in GRACEFUL_SHUTDOWN; we also refuse them in
//! SHUTTING_DOWN (the focus never picks a shutting-down bridge anyway, and a conference created then
//! would be cut off by the exit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

/// Shutdown state, as JVB's ShutdownState plus the final "stopped".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownState {
    /// Normal operation.
    Running,
    /// New conferences are refused; existing ones continue.
    GracefulShutdown,
    /// The focus is moving participants away; the process exits after the shutting-down delay.
    ShuttingDown,
    /// Done: the process should exit now.
    Stopped,
}

impl ShutdownState {
    /// JVB's spelling (`RUNNING`, `GRACEFUL_SHUTDOWN`, …) for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownState::Running => "RUNNING",
            ShutdownState::GracefulShutdown => "GRACEFUL_SHUTDOWN",
            ShutdownState::ShuttingDown => "SHUTTING_DOWN",
            ShutdownState::Stopped => "STOPPED",
        }
    }
}

/// Lifecycle settings (TOML section `lifecycle`).
#[derive(Debug, Clone, PartialEq)]
pub struct LifecycleConfig {
    /// Start in drain mode.
    pub initial_drain: bool,
    /// Longest time spent in GRACEFUL_SHUTDOWN before SHUTTING_DOWN regardless of endpoints (JVB: 24 h).
    pub graceful_shutdown_max_duration: Duration,
    /// GRACEFUL_SHUTDOWN ends once local endpoints are at most this many (JVB: 0).
    pub graceful_shutdown_min_participants: u64,
    /// Time spent in SHUTTING_DOWN before exiting, so the focus can move participants (JVB: 1 min).
    pub shutting_down_delay: Duration,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            initial_drain: false,
            graceful_shutdown_max_duration: Duration::from_secs(24 * 3600),
            graceful_shutdown_min_participants: 0,
            shutting_down_delay: Duration::from_secs(60),
        }
    }
}

/// What the rest of the bridge sees of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LifecycleStatus {
    pub state: ShutdownState,
    pub drain: bool,
    /// Sticky: a graceful shutdown was requested.
    pub graceful_shutdown: bool,
    /// Sticky: SHUTTING_DOWN (or later) was reached.
    pub shutting_down: bool,
}

impl LifecycleStatus {
    /// Whether a `conference-modify` that creates a conference may proceed. The COLIBRI2 handler calls
    /// this and answers a refusal with the `graceful_shutdown` error reason.
    pub fn admit_new_conference(&self) -> Admission {
        match self.state {
            ShutdownState::Running => Admission::Accept,
            _ => Admission::RefuseShuttingDown,
        }
    }
}

/// Answer to "may a new conference be created?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Refuse with COLIBRI2 reason `graceful_shutdown`.
    RefuseShuttingDown,
}

/// An input to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `POST /colibri/shutdown`, SIGTERM, or the XMPP `graceful-shutdown` / `force-shutdown` IQs.
    Shutdown { graceful: bool },
    /// SIGTERM: a graceful shutdown request while there is something to drain; once the bridge is
    /// shutting down (a preStop hook drained it, then the kubelet sends SIGTERM) it stops at once
    /// rather than sitting out the shutting-down delay the focus no longer needs.
    Terminate,
    /// Stop now (SIGINT, second SIGTERM).
    ExitNow,
    /// `POST /colibri/drain/enable|disable`.
    SetDrain(bool),
    /// The current number of local endpoints.
    Endpoints(u64),
}

/// A state change, for logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: ShutdownState,
    pub to: ShutdownState,
    pub reason: &'static str,
}

/// The sans-IO lifecycle state machine.
#[derive(Debug)]
pub struct Lifecycle {
    config: LifecycleConfig,
    state: ShutdownState,
    drain: bool,
    graceful_requested: bool,
    endpoints: u64,
    graceful_deadline: Option<Instant>,
    exit_at: Option<Instant>,
}

impl Lifecycle {
    pub fn new(config: LifecycleConfig) -> Lifecycle {
        Lifecycle {
            drain: config.initial_drain,
            config,
            state: ShutdownState::Running,
            graceful_requested: false,
            endpoints: 0,
            graceful_deadline: None,
            exit_at: None,
        }
    }

    pub fn state(&self) -> ShutdownState {
        self.state
    }

    pub fn status(&self) -> LifecycleStatus {
        LifecycleStatus {
            state: self.state,
            drain: self.drain,
            graceful_shutdown: self.graceful_requested,
            shutting_down: self.state >= ShutdownState::ShuttingDown,
        }
    }

    /// Feeds one command; returns the state change it caused, if any.
    pub fn handle(&mut self, now: Instant, command: Command) -> Option<Transition> {
        match command {
            Command::SetDrain(on) => {
                self.drain = on;
                None
            }
            Command::Endpoints(n) => {
                self.endpoints = n;
                self.maybe_leave_graceful(now)
            }
            Command::Shutdown { graceful: true } => {
                if self.state != ShutdownState::Running {
                    return None;
                }
                self.graceful_requested = true;
                self.state = ShutdownState::GracefulShutdown;
                self.graceful_deadline =
                    now.checked_add(self.config.graceful_shutdown_max_duration);
                // Like JVB, check the endpoint count right away: an idle bridge goes straight on.
                let left = self.maybe_leave_graceful(now);
                Some(left.map_or(
                    Transition {
                        from: ShutdownState::Running,
                        to: ShutdownState::GracefulShutdown,
                        reason: "graceful shutdown requested",
                    },
                    |t| Transition {
                        from: ShutdownState::Running,
                        ..t
                    },
                ))
            }
            Command::Shutdown { graceful: false } => {
                self.enter_shutting_down(now, "shutdown requested")
            }
            Command::Terminate if self.state >= ShutdownState::ShuttingDown => {
                self.stop("SIGTERM after the drain finished")
            }
            Command::Terminate => self.handle(now, Command::Shutdown { graceful: true }),
            Command::ExitNow => self.stop("exit requested"),
        }
    }

    /// The next instant at which [`handle_timeout`](Self::handle_timeout) has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            ShutdownState::GracefulShutdown => self.graceful_deadline,
            ShutdownState::ShuttingDown => self.exit_at,
            _ => None,
        }
    }

    /// Advances timers.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transition> {
        match self.state {
            ShutdownState::GracefulShutdown if self.graceful_deadline.is_none_or(|d| now >= d) => {
                self.enter_shutting_down(now, "graceful shutdown period expired")
            }
            ShutdownState::ShuttingDown if self.exit_at.is_none_or(|d| now >= d) => {
                self.state = ShutdownState::Stopped;
                Some(Transition {
                    from: ShutdownState::ShuttingDown,
                    to: ShutdownState::Stopped,
                    reason: "shutting-down delay elapsed",
                })
            }
            _ => None,
        }
    }

    fn stop(&mut self, reason: &'static str) -> Option<Transition> {
        if self.state == ShutdownState::Stopped {
            return None;
        }
        let from = self.state;
        self.state = ShutdownState::Stopped;
        Some(Transition {
            from,
            to: ShutdownState::Stopped,
            reason,
        })
    }

    fn maybe_leave_graceful(&mut self, now: Instant) -> Option<Transition> {
        if self.state == ShutdownState::GracefulShutdown
            && self.endpoints <= self.config.graceful_shutdown_min_participants
        {
            self.enter_shutting_down(now, "no endpoints left")
        } else {
            None
        }
    }

    fn enter_shutting_down(&mut self, now: Instant, reason: &'static str) -> Option<Transition> {
        if self.state >= ShutdownState::ShuttingDown {
            return None;
        }
        let from = self.state;
        self.state = ShutdownState::ShuttingDown;
        self.exit_at = now.checked_add(self.config.shutting_down_delay);
        Some(Transition {
            from,
            to: ShutdownState::ShuttingDown,
            reason,
        })
    }
}

/// Reads the current number of local endpoints (the media plane's count).
pub type EndpointCount = Arc<dyn Fn() -> u64 + Send + Sync>;

type Request = (Command, oneshot::Sender<LifecycleStatus>);

/// A cheap, cloneable handle on the running lifecycle.
#[derive(Clone)]
pub struct LifecycleHandle {
    commands: mpsc::UnboundedSender<Request>,
    status: watch::Receiver<LifecycleStatus>,
}

impl LifecycleHandle {
    /// The current status (no waiting).
    pub fn status(&self) -> LifecycleStatus {
        *self.status.borrow()
    }

    /// Whether a new conference may be created now (for the COLIBRI2 handler).
    pub fn admit_new_conference(&self) -> Admission {
        self.status().admit_new_conference()
    }

    /// A receiver that wakes on every status change (e.g. to re-publish brewery presence at once).
    pub fn subscribe(&self) -> watch::Receiver<LifecycleStatus> {
        self.status.clone()
    }

    /// Requests a shutdown; returns the status after the request was applied.
    pub async fn request_shutdown(&self, graceful: bool) -> LifecycleStatus {
        self.send(Command::Shutdown { graceful }).await
    }

    /// Sets drain mode; returns the status after the change.
    pub async fn set_drain(&self, on: bool) -> LifecycleStatus {
        self.send(Command::SetDrain(on)).await
    }

    /// SIGTERM ([`Command::Terminate`]).
    pub async fn terminate(&self) -> LifecycleStatus {
        self.send(Command::Terminate).await
    }

    /// Stops now.
    pub async fn exit_now(&self) -> LifecycleStatus {
        self.send(Command::ExitNow).await
    }

    /// Reports the endpoint count now rather than waiting for the driver's next poll.
    pub async fn report_endpoints(&self, n: u64) -> LifecycleStatus {
        self.send(Command::Endpoints(n)).await
    }

    /// Waits until the lifecycle reaches STOPPED (or its driver is gone). Cancel-safe.
    pub async fn stopped(&self) {
        let mut rx = self.status.clone();
        // An error means the driver ended, which only happens after STOPPED or on teardown.
        let _ = rx.wait_for(|s| s.state == ShutdownState::Stopped).await;
    }

    async fn send(&self, command: Command) -> LifecycleStatus {
        let (tx, rx) = oneshot::channel();
        if self.commands.send((command, tx)).is_err() {
            return self.status();
        }
        rx.await.unwrap_or_else(|_| self.status())
    }
}

/// The async shell around [`Lifecycle`]: applies commands, fires timers, and while in
/// GRACEFUL_SHUTDOWN polls the endpoint count every `poll_interval`.
pub struct LifecycleDriver {
    machine: Lifecycle,
    commands: mpsc::UnboundedReceiver<Request>,
    status: watch::Sender<LifecycleStatus>,
    endpoints: EndpointCount,
    poll_interval: Duration,
}

/// Creates the lifecycle: the handle to share and the driver to run (`driver.run().await`).
pub fn lifecycle(
    config: LifecycleConfig,
    endpoints: EndpointCount,
) -> (LifecycleHandle, LifecycleDriver) {
    let machine = Lifecycle::new(config);
    let (status_tx, status_rx) = watch::channel(machine.status());
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    (
        LifecycleHandle {
            commands: cmd_tx,
            status: status_rx,
        },
        LifecycleDriver {
            machine,
            commands: cmd_rx,
            status: status_tx,
            endpoints,
            poll_interval: Duration::from_secs(1),
        },
    )
}

impl LifecycleDriver {
    /// Overrides how often the endpoint count is polled during graceful shutdown (default 1 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Runs until STOPPED.
    pub async fn run(mut self) {
        loop {
            if self.machine.state() == ShutdownState::Stopped {
                return;
            }
            let now = Instant::now();
            let mut wake = self.machine.poll_timeout();
            if self.machine.state() == ShutdownState::GracefulShutdown {
                let poll = now + self.poll_interval;
                wake = Some(wake.map_or(poll, |w| w.min(poll)));
            }
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                request = self.commands.recv() => {
                    let Some((command, reply)) = request else {
                        // Every handle is gone: nobody can ask for anything any more.
                        return;
                    };
                    let now = Instant::now();
                    if matches!(command, Command::Shutdown { graceful: true }) {
                        // Give the machine a fresh count first, as JVB does on the request.
                        let n = (self.endpoints)();
                        self.apply(now, Command::Endpoints(n));
                    }
                    self.apply(now, command);
                    let _ = reply.send(self.machine.status());
                }
                () = sleep => {
                    let now = Instant::now();
                    if self.machine.state() == ShutdownState::GracefulShutdown {
                        let n = (self.endpoints)();
                        self.apply(now, Command::Endpoints(n));
                    }
                    let t = self.machine.handle_timeout(now);
                    self.publish(t);
                }
            }
        }
    }

    fn apply(&mut self, now: Instant, command: Command) {
        let before = self.machine.status();
        let t = self.machine.handle(now, command);
        if let Command::SetDrain(on) = command
            && before.drain != on
        {
            tracing::info!(drain = on, "drain mode changed");
        }
        self.publish(t);
    }

    fn publish(&mut self, t: Option<Transition>) {
        if let Some(t) = t {
            match t.to {
                ShutdownState::GracefulShutdown => tracing::info!(
                    reason = t.reason,
                    max_duration = ?self.machine.config.graceful_shutdown_max_duration,
                    "entering GRACEFUL_SHUTDOWN: new conferences are refused"
                ),
                ShutdownState::ShuttingDown => tracing::info!(
                    reason = t.reason,
                    from = t.from.as_str(),
                    delay = ?self.machine.config.shutting_down_delay,
                    "entering SHUTTING_DOWN: will exit after the delay"
                ),
                ShutdownState::Stopped => tracing::info!(reason = t.reason, "lifecycle STOPPED"),
                ShutdownState::Running => {}
            }
        }
        let status = self.machine.status();
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn cfg() -> LifecycleConfig {
        LifecycleConfig {
            initial_drain: false,
            graceful_shutdown_max_duration: Duration::from_secs(100),
            graceful_shutdown_min_participants: 0,
            shutting_down_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn idle_bridge_goes_straight_to_shutting_down_then_stops_after_delay() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(cfg());
        assert_eq!(m.status().admit_new_conference(), Admission::Accept);
        let t = m.handle(t0, Command::Shutdown { graceful: true }).unwrap();
        assert_eq!(
            (t.from, t.to),
            (ShutdownState::Running, ShutdownState::ShuttingDown)
        );
        let s = m.status();
        assert!(s.graceful_shutdown && s.shutting_down);
        assert_eq!(s.admit_new_conference(), Admission::RefuseShuttingDown);
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(m.handle_timeout(t0 + Duration::from_secs(9)), None);
        let t = m.handle_timeout(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(t.to, ShutdownState::Stopped);
        assert_eq!(m.poll_timeout(), None);
    }

    #[test]
    fn graceful_waits_for_endpoints_to_leave() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(cfg());
        m.handle(t0, Command::Endpoints(3));
        let t = m.handle(t0, Command::Shutdown { graceful: true }).unwrap();
        assert_eq!(t.to, ShutdownState::GracefulShutdown);
        let s = m.status();
        assert!(s.graceful_shutdown && !s.shutting_down);
        assert_eq!(s.admit_new_conference(), Admission::RefuseShuttingDown);
        // A second request changes nothing.
        assert_eq!(m.handle(t0, Command::Shutdown { graceful: true }), None);
        assert_eq!(m.handle(t0, Command::Endpoints(1)), None);
        let t = m
            .handle(t0 + Duration::from_secs(5), Command::Endpoints(0))
            .unwrap();
        assert_eq!(
            (t.from, t.to),
            (ShutdownState::GracefulShutdown, ShutdownState::ShuttingDown)
        );
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    }

    #[test]
    fn graceful_ends_at_max_duration_even_with_endpoints() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(cfg());
        m.handle(t0, Command::Endpoints(5));
        m.handle(t0, Command::Shutdown { graceful: true });
        assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(100)));
        assert_eq!(m.handle_timeout(t0 + Duration::from_secs(99)), None);
        let t = m.handle_timeout(t0 + Duration::from_secs(100)).unwrap();
        assert_eq!(t.to, ShutdownState::ShuttingDown);
        assert_eq!(t.reason, "graceful shutdown period expired");
        assert!(m.status().shutting_down);
    }

    #[test]
    fn min_participants_threshold() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(LifecycleConfig {
            graceful_shutdown_min_participants: 2,
            ..cfg()
        });
        m.handle(t0, Command::Endpoints(3));
        m.handle(t0, Command::Shutdown { graceful: true });
        assert_eq!(m.state(), ShutdownState::GracefulShutdown);
        m.handle(t0, Command::Endpoints(2));
        assert_eq!(m.state(), ShutdownState::ShuttingDown);
    }

    #[test]
    fn non_graceful_skips_graceful_phase_and_is_not_flagged_graceful() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(cfg());
        m.handle(t0, Command::Endpoints(5));
        let t = m.handle(t0, Command::Shutdown { graceful: false }).unwrap();
        assert_eq!(t.to, ShutdownState::ShuttingDown);
        let s = m.status();
        assert!(!s.graceful_shutdown && s.shutting_down);
        // A later graceful request does not go backwards.
        assert_eq!(m.handle(t0, Command::Shutdown { graceful: true }), None);
        assert_eq!(m.state(), ShutdownState::ShuttingDown);
    }

    #[test]
    fn sigterm_drains_while_endpoints_remain_and_stops_once_drained() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(cfg());
        m.handle(t0, Command::Endpoints(3));
        let t = m.handle(t0, Command::Terminate).unwrap();
        assert_eq!(t.to, ShutdownState::GracefulShutdown);
        assert!(m.status().graceful_shutdown);
        // The drain ends: the focus moves the rest during the shutting-down delay…
        m.handle(t0, Command::Endpoints(0));
        assert_eq!(m.state(), ShutdownState::ShuttingDown);
        // …unless a SIGTERM comes (the kubelet's, after a preStop hook drained the bridge).
        let t = m.handle(t0, Command::Terminate).unwrap();
        assert_eq!(
            (t.from, t.to),
            (ShutdownState::ShuttingDown, ShutdownState::Stopped)
        );
        assert_eq!(m.handle(t0, Command::Terminate), None);
    }

    #[test]
    fn exit_now_and_drain() {
        let t0 = Instant::now();
        let mut m = Lifecycle::new(LifecycleConfig {
            initial_drain: true,
            ..cfg()
        });
        assert!(m.status().drain);
        m.handle(t0, Command::SetDrain(false));
        assert!(!m.status().drain);
        assert_eq!(m.status().admit_new_conference(), Admission::Accept);
        let t = m.handle(t0, Command::ExitNow).unwrap();
        assert_eq!(
            (t.from, t.to),
            (ShutdownState::Running, ShutdownState::Stopped)
        );
        assert_eq!(m.handle(t0, Command::ExitNow), None);
    }

    #[tokio::test]
    async fn driver_polls_endpoints_and_stops() {
        let count = Arc::new(AtomicU64::new(2));
        let c = Arc::clone(&count);
        let (handle, driver) = lifecycle(
            LifecycleConfig {
                shutting_down_delay: Duration::from_millis(50),
                ..cfg()
            },
            Arc::new(move || c.load(Ordering::Relaxed)),
        );
        let task = tokio::spawn(driver.with_poll_interval(Duration::from_millis(20)).run());
        let s = handle.set_drain(true).await;
        assert!(s.drain);
        let s = handle.request_shutdown(true).await;
        assert_eq!(s.state, ShutdownState::GracefulShutdown);
        assert_eq!(handle.admit_new_conference(), Admission::RefuseShuttingDown);
        let mut rx = handle.subscribe();
        count.store(0, Ordering::Relaxed);
        rx.wait_for(|s| s.state == ShutdownState::ShuttingDown)
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), handle.stopped())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        // After the driver is gone the handle still answers with the last status.
        assert_eq!(handle.status().state, ShutdownState::Stopped);
        assert_eq!(handle.set_drain(false).await.state, ShutdownState::Stopped);
    }
}
