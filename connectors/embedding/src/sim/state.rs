//! Mutable simulator state: the fault plan ([`Faults`]) and the counters ([`SimStats`]).
//!
//! Both are plain serde structs behind a mutex in the server: tests set them through the handle or through
//! `POST /sim/faults`, and read them through the handle or `GET /sim/stats`, with the same JSON either way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Faults and behaviour that can change while the simulator runs. Counters (`fail_next`, `hang_next`) are
/// consumed by the embedding requests they affect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Fail the next N embedding requests with `fail_status`.
    pub fail_next: u32,
    /// Status of injected failures (from `fail_next` and `error_rate`).
    pub fail_status: u16,
    /// `Retry-After` seconds sent with injected failures; `null` for none.
    pub retry_after_secs: Option<u64>,
    /// Hang the next N embedding requests.
    pub hang_next: u32,
    /// How long a hang lasts, in seconds (shutdown ends it early).
    pub hang_secs: u64,
    /// Fraction (0..=1) of embedding requests failed at random with `fail_status`.
    pub error_rate: f64,
    /// Latency added to each embedding request that passes validation, in milliseconds.
    pub latency_ms: u64,
    /// Embedding requests per second before 429 (`Retry-After: 1`); 0 for unlimited.
    pub rate_limit_per_sec: u32,
}

/// What an injected fault does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InjectedFailure {
    pub status: u16,
    pub retry_after_secs: Option<u64>,
}

impl Faults {
    /// Applies a partial JSON update: keys present in `patch` replace the current values, others are kept
    /// (so `{"fail_next": 3}` leaves the latency alone), and `null` clears `retry_after_secs`.
    pub fn patched(&self, patch: serde_json::Value) -> Result<Faults, String> {
        let serde_json::Value::Object(patch) = patch else {
            return Err("faults must be a JSON object".into());
        };
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let fields = current
            .as_object_mut()
            .expect("Faults serialises to an object");
        for (key, value) in patch {
            if !fields.contains_key(&key) {
                return Err(format!("unknown fault field `{key}`"));
            }
            fields.insert(key, value);
        }
        let faults: Faults = serde_json::from_value(current).map_err(|e| e.to_string())?;
        faults.validate()?;
        Ok(faults)
    }

    /// Rejects settings the server could not honour.
    pub fn validate(&self) -> Result<(), String> {
        if !(400..=599).contains(&self.fail_status) {
            return Err(format!(
                "fail_status {} is not a 4xx or 5xx status",
                self.fail_status
            ));
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            return Err(format!(
                "error_rate {} is not within 0..=1",
                self.error_rate
            ));
        }
        Ok(())
    }

    /// Consumes one planned hang, if any.
    pub(crate) fn take_hang(&mut self) -> bool {
        if self.hang_next > 0 {
            self.hang_next -= 1;
            true
        } else {
            false
        }
    }

    /// Consumes one planned failure, or draws one at `error_rate` (`draw` is uniform in 0..1).
    pub(crate) fn take_failure(&mut self, draw: f64) -> Option<InjectedFailure> {
        let fail = if self.fail_next > 0 {
            self.fail_next -= 1;
            true
        } else {
            draw < self.error_rate
        };
        fail.then_some(InjectedFailure {
            status: self.fail_status,
            retry_after_secs: self.retry_after_secs,
        })
    }
}

/// Counters of what the simulator saw. Only the embedding endpoints (`/embed`, `/v1/embeddings`) are counted;
/// control and health endpoints are not, so reading the stats does not change them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Embedding requests received (counted on arrival, including ones that hang or fail).
    pub requests_total: u64,
    /// Requests received per endpoint path.
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// Responses sent per HTTP status (a hang cut short by the client has none).
    pub requests_by_status: BTreeMap<u16, u64>,
    /// Inputs embedded and returned in 2xx responses: exactly what a caller was served, so "unchanged text is
    /// not re-sent" can be asserted on it.
    pub inputs_embedded: u64,
    /// Inputs in every parseable embedding request, whatever its outcome (a batch retried twice counts thrice).
    pub inputs_received: u64,
    /// Successful embedding requests (batches served).
    pub batches: u64,
    /// Largest number of inputs seen in one request (served or not).
    pub max_batch_seen: usize,
    /// Failures injected by `fail_next`, `error_rate` or the rate limit.
    pub faults_injected: u64,
    /// Requests that were hung on purpose.
    pub hangs: u64,
}

impl SimStats {
    /// Responses sent with `status` (0 when none).
    pub fn requests_with_status(&self, status: u16) -> u64 {
        self.requests_by_status.get(&status).copied().unwrap_or(0)
    }

    pub(crate) fn record_arrival(&mut self, endpoint: &str) {
        self.requests_total += 1;
        *self
            .requests_by_endpoint
            .entry(endpoint.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn record_status(&mut self, status: u16) {
        *self.requests_by_status.entry(status).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn faults() -> Faults {
        Faults {
            fail_next: 0,
            fail_status: 503,
            retry_after_secs: Some(2),
            hang_next: 0,
            hang_secs: 300,
            error_rate: 0.0,
            latency_ms: 100,
            rate_limit_per_sec: 0,
        }
    }

    #[test]
    fn patch_updates_only_given_fields() {
        let patched = faults()
            .patched(json!({"fail_next": 3, "fail_status": 429}))
            .unwrap();
        assert_eq!(
            (patched.fail_next, patched.fail_status, patched.latency_ms),
            (3, 429, 100)
        );
        assert_eq!(patched.retry_after_secs, Some(2));
        let cleared = patched.patched(json!({"retry_after_secs": null})).unwrap();
        assert_eq!(cleared.retry_after_secs, None);
    }

    #[test]
    fn patch_rejects_nonsense() {
        for bad in [
            json!({"fail_nxt": 1}),
            json!({"fail_status": 200}),
            json!({"error_rate": 2.0}),
            json!([1]),
        ] {
            assert!(faults().patched(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn planned_faults_are_consumed() {
        let mut f = Faults {
            fail_next: 2,
            hang_next: 1,
            ..faults()
        };
        assert!(f.take_hang());
        assert!(!f.take_hang());
        let injected = InjectedFailure {
            status: 503,
            retry_after_secs: Some(2),
        };
        assert_eq!(f.take_failure(0.99), Some(injected));
        assert_eq!(f.take_failure(0.99), Some(injected));
        assert_eq!(f.take_failure(0.99), None);
        f.error_rate = 0.5;
        assert_eq!(f.take_failure(0.4), Some(injected));
        assert_eq!(f.take_failure(0.6), None);
    }

    #[test]
    fn stats_json_round_trips() {
        let mut stats = SimStats::default();
        stats.record_arrival("/embed");
        stats.record_status(200);
        let json = serde_json::to_string(&stats).unwrap();
        assert!(
            json.contains("\"/embed\":1") && json.contains("\"200\":1"),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<SimStats>(&json).unwrap(), stats);
        assert_eq!(stats.requests_with_status(200), 1);
    }
}
