//! The API budget: a Salesforce org has a daily allowance of API requests shared by every integration, and
//! reports usage on every answer (`Sforce-Limit-Info: api-usage=N/M`). The client keeps its share of it:
//! once usage reaches `budget_share` of the allowance (or an answer said `REQUEST_LIMIT_EXCEEDED`), calls wait
//! and re-read the usage every `budget_recheck` instead of failing, and say so in the log and in
//! [`BudgetState`]. Only a configured `budget_wait_max` turns the wait into an error.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::wire::ApiUsage;

/// What the client knows of the org's API usage.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetState {
    /// The latest `api-usage` seen.
    pub usage: Option<ApiUsage>,
    /// An answer said `REQUEST_LIMIT_EXCEEDED` and no usage under the share was seen since.
    pub limit_exceeded: bool,
    /// Whether calls are waiting for budget now.
    pub waiting: bool,
    /// How many times a call had to wait for budget.
    pub waits: u64,
}

/// The budget gate (see the module documentation).
#[derive(Debug)]
pub struct Budget {
    share: f64,
    recheck: Duration,
    wait_max: Option<Duration>,
    state: Mutex<BudgetState>,
}

/// What a call should do before going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Within budget.
    Go,
    /// Wait this long, then look at the usage again.
    Wait(Duration),
    /// Waited long enough: fail with the usage seen.
    GiveUp(ApiUsage),
}

impl Budget {
    /// A gate letting `share` (0..=1) of the allowance through.
    pub fn new(share: f64, recheck: Duration, wait_max: Option<Duration>) -> Self {
        Self {
            share,
            recheck,
            wait_max,
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// The share of the allowance this client may use.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// A copy of what is known.
    pub fn state(&self) -> BudgetState {
        self.state.lock().clone()
    }

    /// Records the usage an answer reported.
    pub fn record(&self, usage: ApiUsage) {
        let mut s = self.state.lock();
        s.usage = Some(usage);
        if !self.over(&usage) {
            s.limit_exceeded = false;
        }
    }

    /// Records a `REQUEST_LIMIT_EXCEEDED` answer.
    pub fn record_limit_exceeded(&self) {
        self.state.lock().limit_exceeded = true;
    }

    fn over(&self, u: &ApiUsage) -> bool {
        u.max > 0 && u.used as f64 >= self.share * u.max as f64
    }

    /// Whether the next call must wait.
    pub fn blocked(&self) -> bool {
        let s = self.state.lock();
        s.limit_exceeded || s.usage.is_some_and(|u| self.over(&u))
    }

    /// The decision for a call that has been waiting since `since` (`None`: not waited yet).
    pub(crate) fn gate(&self, since: Option<Instant>) -> Gate {
        let mut s = self.state.lock();
        let blocked = s.limit_exceeded || s.usage.is_some_and(|u| self.over(&u));
        if !blocked {
            if s.waiting {
                tracing::info!(usage = ?s.usage, "salesforce API budget available again");
            }
            s.waiting = false;
            return Gate::Go;
        }
        let usage = s.usage.unwrap_or(ApiUsage { used: 0, max: 0 });
        if since.is_none() {
            s.waits += 1;
            if !s.waiting {
                tracing::warn!(
                    used = usage.used,
                    max = usage.max,
                    share = self.share,
                    limit_exceeded = s.limit_exceeded,
                    "salesforce API budget reached, waiting"
                );
            }
        }
        s.waiting = true;
        let waited = since.map(|t| t.elapsed()).unwrap_or_default();
        match self.wait_max {
            Some(max) if waited >= max => Gate::GiveUp(usage),
            Some(max) => Gate::Wait(self.recheck.min(max - waited)),
            None => Gate::Wait(self.recheck),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_follows_usage() {
        let b = Budget::new(0.5, Duration::from_millis(10), Some(Duration::ZERO));
        assert_eq!(b.gate(None), Gate::Go);
        b.record(ApiUsage { used: 49, max: 100 });
        assert_eq!(b.gate(None), Gate::Go);
        b.record(ApiUsage { used: 50, max: 100 });
        assert!(b.blocked());
        assert_eq!(
            b.gate(Some(Instant::now())),
            Gate::GiveUp(ApiUsage { used: 50, max: 100 })
        );
        b.record(ApiUsage { used: 10, max: 100 });
        assert_eq!(b.gate(None), Gate::Go);
        b.record_limit_exceeded();
        assert!(b.blocked());
        b.record(ApiUsage { used: 1, max: 100 });
        assert!(!b.blocked());
    }

    #[test]
    fn waits_without_a_maximum() {
        let b = Budget::new(0.1, Duration::from_millis(7), None);
        b.record(ApiUsage { used: 20, max: 100 });
        assert_eq!(b.gate(None), Gate::Wait(Duration::from_millis(7)));
        assert_eq!(b.state().waits, 1);
        assert!(b.state().waiting);
    }
}
