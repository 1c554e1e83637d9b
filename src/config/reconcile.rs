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
    /// Records listed per CRM request (Bullhorn's maximum `count` is 500).
    pub page_size: u32,
    /// Ids per re-read request for missing and stale records.
    pub reread_batch: u32,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval_secs: None,
            api_share: 0.2,
            page_size: 500,
            reread_batch: 100,
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
    }
}
