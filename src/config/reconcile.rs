//! `[reconcile]`: how reconciliation (`crmflow reconcile`, and its scheduled mode inside `run`)
//! compares each CRM with Postgres, and how much of the CRM's API budget it may take.

use serde::{Deserialize, Serialize};

/// Reconciliation settings. The scheduled mode is off until `interval_secs` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileConfig {
    /// Seconds between scheduled reconciles inside `crmflow run` (with the ingest stage); unset or 0
    /// = never. One process reconciles at a time across replicas (a Postgres advisory lock); the
    /// others skip the round.
    pub interval_secs: Option<u64>,
    /// Share of a CRM's request budget (`bullhorn.requests_per_minute`, ...) reconciliation may use,
    /// 0 < share <= 1 (1 for a standalone run that may take the whole budget). While scheduled reconciliation is on, ingest keeps the rest (`1 - share`), so
    /// the two together stay under the CRM's limit and ingest is never starved.
    pub api_share: f64,
    /// Records listed per CRM request, capped at each CRM's largest page; 0 (the default) = that
    /// largest page (Bullhorn 500, HubSpot 100, Salesforce 2,000).
    pub page_size: u32,
    /// Ids per re-read request for missing and stale records.
    pub reread_batch: u32,
    /// Listings in flight at once per entity: the id span is split into ranges (4 per listing) that
    /// are listed and compared concurrently, all under the one budget of `api_share`. 1 = one
    /// sequential listing. Each active range holds one page, one Postgres chunk and one dedicated
    /// Postgres connection.
    pub list_concurrency: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval_secs: None,
            api_share: 0.2,
            page_size: 0,
            reread_batch: 100,
            list_concurrency: 4,
        }
    }
}

impl ReconcileConfig {
    /// The scheduled interval, when scheduling is on.
    pub fn interval(&self) -> Option<std::time::Duration> {
        self.interval_secs
            .filter(|&s| s > 0)
            .map(std::time::Duration::from_secs)
    }

    /// `api_share` clamped to a usable range.
    pub fn share(&self) -> f64 {
        if self.api_share.is_finite() {
            self.api_share.clamp(0.01, 1.0)
        } else {
            0.2
        }
    }

    /// Reconciliation's slice of a per-minute budget (at least 1 request per minute).
    pub fn budget(&self, requests_per_minute: u32) -> u32 {
        ((f64::from(requests_per_minute) * self.share()).floor() as u32).max(1)
    }

    /// The token bucket that keeps reconciliation inside `budget(requests_per_minute)` over every
    /// minute: `(rate per minute, burst)`. A GCRA bucket of rate r and burst b lets through at most
    /// `b + r` requests in any 60-second window (the burst, then one every 60/r s), so the rate is
    /// the budget less the burst, and the burst is one second's worth (at least 1).
    pub fn per_minute_limit(&self, requests_per_minute: u32) -> (u32, u32) {
        let budget = self.budget(requests_per_minute);
        if budget < 2 {
            // Cannot fit a burst beside a rate: one request per minute, no burst.
            return (1, 1);
        }
        let burst = (budget / 60).clamp(1, budget / 2);
        (budget - burst, burst)
    }

    /// The budget per window (`requests_per_10s` of HubSpot) to give a client whose limiter adds a
    /// burst of a tenth of it: the largest n with `n + max(1, n / 10) <= budget(window)`, so every
    /// window holds at most reconciliation's share.
    pub fn tenth_burst_limit(&self, requests_per_window: u32) -> u32 {
        let budget = self.budget(requests_per_window);
        let mut n = budget;
        while n > 1 && n + (n / 10).max(1) > budget {
            n -= 1;
        }
        n
    }

    /// The listing page of a CRM whose largest page is `max`.
    pub fn page(&self, max: u32) -> u32 {
        match self.page_size {
            0 => max.max(1),
            n => n.clamp(1, max.max(1)),
        }
    }

    /// The number of listings in flight per entity (at least 1).
    pub fn concurrency(&self) -> usize {
        self.list_concurrency.clamp(1, 64) as usize
    }

    /// What ingest keeps of a per-minute budget while scheduled reconciliation is on.
    pub fn ingest_budget(&self, requests_per_minute: u32) -> u32 {
        requests_per_minute
            .saturating_sub(self.budget(requests_per_minute))
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_split_without_overlap() {
        let c = ReconcileConfig::default();
        assert_eq!(c.interval(), None);
        assert_eq!(c.budget(1_500), 300);
        assert_eq!(c.ingest_budget(1_500), 1_200);
        let c = ReconcileConfig {
            api_share: 5.0,
            interval_secs: Some(0),
            ..Default::default()
        };
        assert_eq!(c.interval(), None);
        assert_eq!(c.budget(100), 100);
        assert_eq!(c.ingest_budget(100), 1);
        let c = ReconcileConfig {
            api_share: f64::NAN,
            interval_secs: Some(60),
            ..Default::default()
        };
        assert_eq!(c.budget(1_000), 200);
        assert_eq!(c.interval(), Some(std::time::Duration::from_secs(60)));
        assert_eq!(c.page(500), 500);
        assert_eq!(c.page(2_000), 2_000);
        let c = ReconcileConfig {
            page_size: 20,
            ..Default::default()
        };
        assert_eq!((c.page(500), c.page(10)), (20, 10));
    }

    #[test]
    fn limits_fit_the_share_in_every_window() {
        for share in [0.01, 0.05, 0.2, 0.33, 0.5, 0.98, 1.0] {
            let c = ReconcileConfig {
                api_share: share,
                ..Default::default()
            };
            for rpm in [1, 2, 3, 7, 60, 100, 150, 1_500, 10_000] {
                let budget = c.budget(rpm);
                let (rate, burst) = c.per_minute_limit(rpm);
                assert!(rate >= 1 && burst >= 1, "{share} of {rpm}");
                assert!(
                    rate + burst <= budget.max(2),
                    "{share} of {rpm}: {rate} + {burst} > {budget}"
                );
                let n = c.tenth_burst_limit(rpm);
                assert!(n >= 1);
                assert!(
                    n + (n / 10).max(1) <= budget.max(2),
                    "{share} of {rpm}: {n}"
                );
            }
        }
        // The scheduled default: 300 of 1,500/min is 295/min and a burst of 5, not 300 + 25.
        assert_eq!(ReconcileConfig::default().per_minute_limit(1_500), (295, 5));
        // HubSpot's default 90 per 10 s at 0.2: 18 -> 17 (+1 burst) rather than 18 (+1).
        assert_eq!(ReconcileConfig::default().tenth_burst_limit(90), 17);
    }

    /// The clients' bucket (governor's GCRA, as the Bullhorn client builds it) driven greedily on a
    /// fake clock: no 60-second window ever holds more than reconciliation's budget. With the old
    /// arithmetic (rate = budget, burst 25) the first minute held 325 of a 300 budget.
    #[test]
    fn greedy_client_never_exceeds_the_share_over_any_minute() {
        use governor::clock::FakeRelativeClock;
        use governor::{Quota, RateLimiter};
        use std::num::NonZeroU32;
        use std::time::Duration;

        let max_in_any_minute = |rate: u32, burst: u32| {
            let clock = FakeRelativeClock::default();
            let quota = Quota::per_minute(NonZeroU32::new(rate).unwrap())
                .allow_burst(NonZeroU32::new(burst).unwrap());
            let limiter = RateLimiter::direct_with_clock(quota, clock.clone());
            let mut sent: Vec<u64> = Vec::new();
            for ms in 0..200_000u64 {
                while limiter.check().is_ok() {
                    sent.push(ms);
                }
                clock.advance(Duration::from_millis(1));
            }
            // The most requests in any closed window [t, t + 60 s].
            let (mut best, mut lo) = (0, 0);
            for hi in 0..sent.len() {
                while sent[hi] - sent[lo] > 60_000 {
                    lo += 1;
                }
                best = best.max(hi - lo + 1);
            }
            best as u32
        };
        let c = ReconcileConfig::default();
        let budget = c.budget(1_500);
        let (rate, burst) = c.per_minute_limit(1_500);
        assert!(max_in_any_minute(rate, burst) <= budget);
        assert!(
            max_in_any_minute(300, 25) > budget,
            "the old limiter overshot"
        );
        let full = ReconcileConfig {
            api_share: 0.98,
            ..Default::default()
        };
        let (rate, burst) = full.per_minute_limit(1_500);
        assert!(max_in_any_minute(rate, burst) <= full.budget(1_500));
    }
}
