//! The retransmission timer (Jacobson/Karels, RFC 6298) the session core times resends by.

use std::time::Duration;

use super::limits;

/// Jacobson/Karels retransmission timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoEstimator {
    srtt: Duration,
    rttvar: Duration,
    rto: Duration,
}

impl Default for RtoEstimator {
    fn default() -> Self {
        RtoEstimator {
            srtt: limits::INITIAL_SRTT,
            rttvar: limits::INITIAL_RTTVAR,
            rto: limits::INITIAL_RTO,
        }
    }
}

impl RtoEstimator {
    /// Folds in one round-trip sample.
    pub fn sample(&mut self, rtt: Duration) {
        self.rttvar = self.rttvar * 3 / 4 + self.srtt.abs_diff(rtt) / 4;
        self.srtt = self.srtt * 7 / 8 + rtt / 8;
        self.rto =
            (self.srtt + (self.rttvar * 4).max(limits::MIN_RTO_VAR_TERM)).min(limits::MAX_RTO);
    }

    /// Current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// Current smoothed round-trip time.
    pub fn srtt(&self) -> Duration {
        self.srtt
    }
}
