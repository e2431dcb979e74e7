//! When a sender is told how high to encode, so that the client can follow whatever order its
//! asynchronous handling takes (`SenderSourceConstraints` per source, `SenderVideoConstraints` per
//! endpoint for the 2021 client).
//!
//! Why not simply "send on every change" as JVB does (jitsi-videobridge
//! `jvb/src/main/kotlin/org/jitsi/videobridge/AbstractEndpoint.kt`, `receiverVideoConstraintsChanged`):
//! - The 2021 lib-jitsi-meet applies each constraint with an unchained `getParameters` /
//!   `setParameters` pair (`modules/RTC/TraceablePeerConnection.js`, `setSenderVideoConstraints`);
//!   two constraints a few milliseconds apart make Chromium reject the second one, and the sender
//!   stays on the first value. So a value is held off ([`HOLD_OFF`]) after it changes and after the
//!   previous message, and only the latest value goes out (no transient values).
//! - Both clients store a value before applying it and drop a repeat of the stored value
//!   (2021 `modules/qualitycontrol/SendVideoController.js`, current
//!   `modules/qualitycontrol/SendVideoController.ts`, `onSenderConstraintsReceived`), so a value
//!   whose application failed cannot be re-sent as is. When the sender's measured layers do not
//!   follow the value ([`layers_follow`]: a layer above it [`VERIFY_AFTER`] after it was sent,
//!   or only the lowest layer when more were asked for [`STUCK_AFTER`] after), the value is
//!   *nudged*: sent as
//!   `height + 1`, which both clients map to the same layers (a layer is enabled when its height is
//!   at most the value), then as `height` again, at most [`MAX_NUDGES`] times per value. The
//!   layers are compared again whenever they change later.
//! - A value told while the channel was closed is lost; every value is (re)sent when the channel
//!   opens.
//!
//! [`Announcement`] is the state of one such value (one source, or one 2021 endpoint); the
//! conference computes the wanted heights and judges whether the layers follow.

use std::time::{Duration, Instant};

/// Minimum time between a change of the wanted value and its message, and between two messages
/// for the same source (the 2021 client's race window was ≤ 10 ms on this machine, one
/// `setParameters` takes 30–110 ms; this leaves a wide margin and still reacts within a frame or
/// ten).
pub const HOLD_OFF: Duration = Duration::from_millis(300);
/// How long after a message the sender's layers are compared with it.
pub const VERIFY_AFTER: Duration = Duration::from_millis(4000);
/// How long a sender may send only its lowest layer when more were asked for before it is nudged:
/// a sender starting its upper layers ramps its own bandwidth estimate first (seconds under load),
/// and a nudge in the middle makes it reconfigure its encoder and start over.
pub const STUCK_AFTER: Duration = Duration::from_secs(10);
/// Nudges per value before the bridge gives up (the sender may simply lack the bandwidth or CPU).
pub const MAX_NUDGES: u8 = 3;
/// `maxHeight` / `idealHeight` that stands for "no limit" when a value must be a height
/// (both clients treat -1 as 2160p, `MAX_LOCAL_RESOLUTION` / `VIDEO_QUALITY_LEVELS[0]`).
pub const UNLIMITED_HEIGHT: i32 = 2160;

/// What goes on the wire for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Told {
    /// The height the allocation wants (-1 = unlimited, 0 = stop).
    pub height: i32,
    /// Sent as the next height up, so that a client that dropped or failed the plain value
    /// re-applies it.
    pub nudged: bool,
}

impl Told {
    /// The number for `SenderSourceConstraints.maxHeight` (-1 stays -1 unless nudged).
    pub fn max_height(self) -> i32 {
        match (self.nudged, self.height < 0) {
            (false, _) => self.height,
            (true, true) => UNLIMITED_HEIGHT + 1,
            (true, false) => self.height + 1,
        }
    }

    /// The number for `SenderVideoConstraints.idealHeight` (the 2021 client ignores a negative
    /// value and would keep an earlier, lower limit, so unlimited is [`UNLIMITED_HEIGHT`]).
    pub fn ideal_height(self) -> i32 {
        let h = if self.height < 0 {
            UNLIMITED_HEIGHT
        } else {
            self.height
        };
        if self.nudged { h + 1 } else { h }
    }
}

/// One value told to a sender. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct Announcement {
    /// What the allocation wants now.
    wanted: Option<i32>,
    /// The last message (what the sender should be following), and when it went out.
    told: Option<(Told, Instant)>,
    /// A message is pending from then on (the wanted value changed, or the channel opened).
    pending_since: Option<Instant>,
    /// When the sender's layers are compared with the told value.
    verify_at: Option<Instant>,
    /// Nudges sent for the told value.
    nudges: u8,
}

/// What [`Announcement::poll`] asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing now.
    Nothing,
    /// Send this message.
    Send(Told),
    /// Compare the sender's layers with this height, then call [`Announcement::verified`].
    Verify(i32),
}

impl Announcement {
    /// The value the allocation wants now. A change is sent after the hold-off; changing back to
    /// what the sender was told cancels it.
    pub fn want(&mut self, now: Instant, height: i32) {
        if self.wanted == Some(height) {
            return;
        }
        self.wanted = Some(height);
        if self.told.is_some_and(|(t, _)| t.height == height) {
            self.pending_since = None;
        } else if self.pending_since.is_none() {
            self.pending_since = Some(now);
        }
    }

    /// The value currently wanted.
    pub fn wanted(&self) -> Option<i32> {
        self.wanted
    }

    /// The channel (re)opened: whatever the sender was told may be lost, tell it again now (or,
    /// if a message went out very recently, once the hold-off since it has passed).
    pub fn channel_opened(&mut self, now: Instant) {
        if self.wanted.is_some() {
            // Already waiting for a change to settle: that message will carry the value.
            if self.pending_since.is_none() {
                self.pending_since = Some(now.checked_sub(HOLD_OFF).unwrap_or(now));
            }
        }
    }

    /// When [`Announcement::poll`] has something to do.
    pub fn next_due(&self) -> Option<Instant> {
        if self.wanted.is_some()
            && let Some(since) = self.pending_since
        {
            let settled = since + HOLD_OFF;
            return Some(match self.told {
                Some((_, at)) => settled.max(at + HOLD_OFF),
                None => settled,
            });
        }
        self.verify_at
    }

    /// What is due at `now`. A returned [`Due::Send`] is recorded as sent; the caller must send it
    /// (call only while the channel is open).
    pub fn poll(&mut self, now: Instant) -> Due {
        let Some(due) = self.next_due().filter(|t| *t <= now) else {
            return Due::Nothing;
        };
        let Some(height) = self.wanted else {
            return Due::Nothing;
        };
        if self.pending_since.is_some() {
            self.pending_since = None;
            let told = Told {
                height,
                nudged: false,
            };
            self.nudges = 0;
            self.record(now, told);
            return Due::Send(told);
        }
        debug_assert!(self.verify_at.is_some_and(|v| v == due));
        match self.told {
            Some((t, _)) => Due::Verify(t.height),
            None => {
                self.verify_at = None;
                Due::Nothing
            }
        }
    }

    /// The sender's layers changed since it was told: compare them with the told value again
    /// (a client may fail to apply a value long after it was sent). Returns when.
    pub fn recheck(&mut self, now: Instant) -> Option<Instant> {
        let (t, _) = self.told?;
        if self.verify_at.is_none() && t.height != 0 && self.nudges < MAX_NUDGES {
            self.verify_at = Some(now + VERIFY_AFTER);
        }
        self.next_due()
    }

    /// The answer to [`Due::Verify`]: a nudge to send when the layers do not follow.
    pub fn verified(&mut self, now: Instant, verdict: Verdict) -> Option<Told> {
        self.verify_at = None;
        let (t, at) = self.told?;
        match verdict {
            Verdict::Follows | Verdict::Unknown => return None,
            Verdict::Over => {}
            Verdict::Stuck if now < at + STUCK_AFTER => {
                self.verify_at = Some(at + STUCK_AFTER);
                return None;
            }
            Verdict::Stuck => {}
        }
        self.nudges += 1;
        let told = Told {
            height: t.height,
            nudged: !t.nudged,
        };
        self.record(now, told);
        Some(told)
    }

    fn record(&mut self, now: Instant, told: Told) {
        self.told = Some((told, now));
        // 0 asks the sender to stop: nothing to verify it by but silence, and a nudge (1) would
        // turn its lowest layer on.
        self.verify_at = (told.height != 0 && self.nudges < MAX_NUDGES).then(|| now + VERIFY_AFTER);
    }
}

/// How a sender's layers compare with what it was told (worst last: combining several sources
/// takes the maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Nothing to judge by (nothing sent: a muted camera), or a shortfall its own bandwidth
    /// estimate explains (some upper layers, not all).
    Unknown,
    Follows,
    /// Only the lowest layer although more were asked for: a value the client failed to apply
    /// (the 2021 race), or a very slow ramp — nudged after [`STUCK_AFTER`].
    Stuck,
    /// A layer above the value: never the sender's bandwidth estimate — nudged at once.
    Over,
}

/// How a simulcast sender's layers compare with a constraint: `(height, active)` per encoding,
/// lowest first. Both clients enable a layer when its height is at most the value and always
/// keep the lowest one (2021 `modules/RTC/TPCUtils.js`, current `modules/RTC/TPCUtils.ts`,
/// `calculateEncodingsActiveState`). A single encoding is judged only downwards (its top height
/// is the capture's).
pub fn layers_follow(height: i32, encodings: &[(i32, bool)]) -> Verdict {
    if height == 0 || !encodings.iter().any(|(_, a)| *a) {
        return Verdict::Unknown;
    }
    let limit = if height < 0 { i32::MAX } else { height };
    if let [(h, _)] = encodings {
        // A little above is rounding (e.g. 540 for a 536 capture); twice is another layer.
        return if *h <= limit.saturating_mul(3) / 2 {
            Verdict::Follows
        } else {
            Verdict::Over
        };
    }
    let wanted = |i: usize, h: i32| i == 0 || h <= limit;
    if encodings
        .iter()
        .enumerate()
        .any(|(i, &(h, active))| active && !wanted(i, h))
    {
        return Verdict::Over;
    }
    let missing = encodings
        .iter()
        .enumerate()
        .any(|(i, &(h, active))| !active && wanted(i, h));
    let base_only = encodings.iter().skip(1).all(|(_, active)| !active);
    match (missing, base_only) {
        (false, _) => Verdict::Follows,
        (true, true) => Verdict::Stuck,
        (true, false) => Verdict::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Polls every 10 ms up to `until`, answering verifications with `follows`; returns the
    /// messages with their offsets from `t0`.
    fn run(
        a: &mut Announcement,
        t0: Instant,
        from: u64,
        until: u64,
        follows: Verdict,
    ) -> Vec<(u64, Told)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= until {
            let now = t0 + ms(t);
            loop {
                match a.poll(now) {
                    Due::Nothing => break,
                    Due::Send(m) => out.push((t, m)),
                    Due::Verify(_) => {
                        if let Some(m) = a.verified(now, follows) {
                            out.push((t, m));
                        }
                    }
                }
            }
            t += 10;
        }
        out
    }

    fn plain(height: i32) -> Told {
        Told {
            height,
            nudged: false,
        }
    }

    #[test]
    fn a_transient_value_is_never_sent() {
        let t0 = Instant::now();
        let mut a = Announcement::default();
        a.want(t0, 180);
        a.want(t0 + ms(5), 360);
        let sent = run(&mut a, t0, 0, 1000, Verdict::Follows);
        assert_eq!(sent, vec![(300, plain(360))]);
        // A change right after a message waits for the hold-off since that message.
        a.want(t0 + ms(1010), 720);
        a.want(t0 + ms(1020), 180);
        a.want(t0 + ms(1200), 720);
        let sent = run(&mut a, t0, 1010, 2000, Verdict::Follows);
        assert_eq!(sent, vec![(1310, plain(720))]);
        // Back to the told value before it went out: nothing.
        a.want(t0 + ms(2000), 360);
        a.want(t0 + ms(2100), 720);
        assert_eq!(run(&mut a, t0, 2000, 6000, Verdict::Follows), vec![]);
    }

    #[test]
    fn the_channel_opening_resends_the_current_value_at_once() {
        let t0 = Instant::now();
        let mut a = Announcement::default();
        a.want(t0, 360);
        assert_eq!(
            run(&mut a, t0, 0, 400, Verdict::Follows),
            vec![(300, plain(360))]
        );
        a.channel_opened(t0 + ms(5000));
        assert_eq!(
            run(&mut a, t0, 5000, 5100, Verdict::Follows),
            vec![(5000, plain(360))]
        );
        // Nothing decided yet: nothing to send.
        let mut b = Announcement::default();
        b.channel_opened(t0);
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn layers_that_do_not_follow_get_a_different_value_then_the_same_again() {
        let t0 = Instant::now();
        let mut a = Announcement::default();
        a.want(t0, 720);
        let sent = run(&mut a, t0, 0, 20_000, Verdict::Over);
        let nudged = Told {
            height: 720,
            nudged: true,
        };
        assert_eq!(
            sent,
            vec![
                (300, plain(720)),
                (4300, nudged),
                (8300, plain(720)),
                (12_300, nudged)
            ]
        );
        assert_eq!(nudged.max_height(), 721);
        assert_eq!(nudged.ideal_height(), 721);
        // A new value starts over.
        a.want(t0 + ms(20_000), 360);
        let sent = run(&mut a, t0, 20_000, 25_000, Verdict::Over);
        assert_eq!(sent, vec![(20_300, plain(360)), (24_300, sent[1].1)]);
        assert!(sent[1].1.nudged);
        // Layers that follow: no nudge; 0 is never nudged (1 would turn a layer on).
        let mut b = Announcement::default();
        b.want(t0, 180);
        assert_eq!(
            run(&mut b, t0, 0, 10_000, Verdict::Follows),
            vec![(300, plain(180))]
        );
        let mut c = Announcement::default();
        c.want(t0, 0);
        assert_eq!(
            run(&mut c, t0, 0, 10_000, Verdict::Over),
            vec![(300, plain(0))]
        );
    }

    #[test]
    fn a_sender_stuck_on_its_lowest_layer_is_nudged_only_after_a_long_while() {
        let t0 = Instant::now();
        let mut a = Announcement::default();
        a.want(t0, 720);
        let sent = run(&mut a, t0, 0, 20_000, Verdict::Stuck);
        let nudged = Told {
            height: 720,
            nudged: true,
        };
        assert_eq!(sent, vec![(300, plain(720)), (10_300, nudged)]);
    }

    #[test]
    fn unlimited_values_on_the_wire() {
        assert_eq!(plain(-1).max_height(), -1);
        assert_eq!(plain(-1).ideal_height(), UNLIMITED_HEIGHT);
        let n = Told {
            height: -1,
            nudged: true,
        };
        assert_eq!(n.max_height(), UNLIMITED_HEIGHT + 1);
        assert_eq!(n.ideal_height(), UNLIMITED_HEIGHT + 1);
    }

    #[test]
    fn simulcast_layers_follow_a_height() {
        let l = |a: [bool; 3]| [(180, a[0]), (360, a[1]), (720, a[2])];
        assert_eq!(layers_follow(720, &l([true, true, true])), Verdict::Follows);
        assert_eq!(layers_follow(-1, &l([true, true, true])), Verdict::Follows);
        assert_eq!(
            layers_follow(360, &l([true, true, false])),
            Verdict::Follows
        );
        assert_eq!(
            layers_follow(361, &l([true, true, false])),
            Verdict::Follows
        );
        // Upper layers but not all: the sender's bandwidth estimate, not a lost value.
        assert_eq!(
            layers_follow(720, &l([true, true, false])),
            Verdict::Unknown
        );
        // The 2021 race: asked for 360, stuck at 180.
        assert_eq!(layers_follow(360, &l([true, false, false])), Verdict::Stuck);
        assert_eq!(layers_follow(180, &l([true, true, true])), Verdict::Over);
        // The lowest layer stays on below its height.
        assert_eq!(
            layers_follow(90, &l([true, false, false])),
            Verdict::Follows
        );
        assert_eq!(
            layers_follow(720, &l([false, false, false])),
            Verdict::Unknown
        );
        assert_eq!(layers_follow(0, &l([true, false, false])), Verdict::Unknown);
        assert_eq!(layers_follow(180, &[(720, true)]), Verdict::Over);
        assert_eq!(layers_follow(720, &[(720, true)]), Verdict::Follows);
        assert_eq!(layers_follow(360, &[(180, true)]), Verdict::Follows);
    }
}
