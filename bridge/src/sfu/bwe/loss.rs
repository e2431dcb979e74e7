//! Loss-based control (GoogCC's classic rule): loss is measured over at least 20 reported
//! packets; above 10 % the target is cut by half the loss fraction (at most once per 300 ms +
//! RTT); between 2 % and 10 % it may not grow; below 2 % it may grow again, 8 % per second, until
//! the delay-based estimate is the tighter bound again. Expressed as an optional cap on the delay
//! based estimate, so without loss it never slows down probing or ramp-up.

const MIN_PACKETS: u32 = 20;
const LOW_LOSS: f64 = 0.02;
const HIGH_LOSS: f64 = 0.10;
const DECREASE_INTERVAL_US: i64 = 300_000;

#[derive(Debug, Clone, Default)]
pub struct LossController {
    limit_bps: Option<f64>,
    lost: u32,
    expected: u32,
    /// Loss fraction of the last complete measurement.
    pub fraction: f64,
    last_decrease_us: Option<i64>,
    last_update_us: Option<i64>,
}

impl LossController {
    /// The cap, if loss currently limits the rate.
    pub fn limit_bps(&self) -> Option<f64> {
        self.limit_bps
    }

    /// The last measurement said the link is losing a lot (above 10 %): a reason not to probe.
    /// A cap kept by a few percent of loss ("hold") is not: a probe measures the path anyway.
    pub fn high_loss(&self) -> bool {
        self.fraction > HIGH_LOSS
    }

    /// A probe measured more capacity than the cap (GoogCC sets the send rate from a probe
    /// result, over the loss-based estimate): the cap goes.
    pub fn on_probe_result(&mut self) {
        self.limit_bps = None;
    }

    /// Counts of one feedback; `target_bps` is the current overall target.
    pub fn on_feedback(
        &mut self,
        now_us: i64,
        lost: u32,
        received: u32,
        target_bps: f64,
        rtt_us: i64,
    ) {
        self.lost += lost;
        self.expected += lost + received;
        if self.expected < MIN_PACKETS {
            return;
        }
        self.fraction = f64::from(self.lost) / f64::from(self.expected);
        self.lost = 0;
        self.expected = 0;
        if self.fraction > HIGH_LOSS {
            if self
                .last_decrease_us
                .is_none_or(|t| now_us - t >= DECREASE_INTERVAL_US + rtt_us)
            {
                let base = self.limit_bps.map_or(target_bps, |l| l.min(target_bps));
                self.limit_bps = Some(base * (1.0 - 0.5 * self.fraction));
                self.last_decrease_us = Some(now_us);
            }
        } else if self.fraction >= LOW_LOSS {
            // Hold: no increase while losing a few percent.
            let base = self.limit_bps.map_or(target_bps, |l| l.min(target_bps));
            self.limit_bps = Some(base);
        }
    }

    /// Lets the cap grow (8 %/s + 1 kbps/s) while loss is low; lifts it once the delay-based
    /// estimate is below it.
    pub fn update(&mut self, now_us: i64, delay_bps: f64) {
        let dt_s = self
            .last_update_us
            .map_or(0.0, |t| (now_us - t).max(0) as f64 / 1e6)
            .min(1.0);
        self.last_update_us = Some(now_us);
        let Some(l) = self.limit_bps else { return };
        if self.fraction < LOW_LOSS {
            let grown = l * 1.08f64.powf(dt_s) + 1000.0 * dt_s;
            if grown >= delay_bps {
                self.limit_bps = None;
            } else {
                self.limit_bps = Some(grown);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_loss_cuts_low_loss_recovers_middle_holds() {
        let mut l = LossController::default();
        // 20 % loss on 100 packets: cut by 10 %.
        l.on_feedback(0, 20, 80, 1_000_000.0, 50_000);
        assert_eq!(l.limit_bps(), Some(900_000.0));
        // Again within 300 ms + RTT: no second cut.
        l.on_feedback(100_000, 20, 80, 900_000.0, 50_000);
        assert_eq!(l.limit_bps(), Some(900_000.0));
        l.on_feedback(400_000, 20, 80, 900_000.0, 50_000);
        assert_eq!(l.limit_bps(), Some(810_000.0));
        // 5 %: hold, even with time passing.
        l.on_feedback(500_000, 5, 95, 810_000.0, 50_000);
        l.update(500_000, 2_000_000.0);
        l.update(1_500_000, 2_000_000.0);
        assert_eq!(l.limit_bps(), Some(810_000.0));
        // Fewer than 20 packets: no verdict yet.
        l.on_feedback(1_600_000, 0, 10, 810_000.0, 50_000);
        assert_eq!(l.fraction, 0.05);
        // 0 %: grows ≈ 8 %/s, lifted once above the delay-based estimate.
        l.on_feedback(1_700_000, 0, 30, 810_000.0, 50_000);
        l.update(1_700_000, 2_000_000.0);
        l.update(2_700_000, 2_000_000.0);
        let v = l.limit_bps().unwrap();
        assert!((888_000.0..891_000.0).contains(&v), "{v}");
        for i in 0..20 {
            l.update(2_700_000 + i * 1_000_000, 1_000_000.0);
        }
        assert_eq!(l.limit_bps(), None);
    }
}
