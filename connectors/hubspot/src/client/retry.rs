//! Retry decisions and backoff, in one place.
//!
//! [`RetryPolicy::decide`] turns a failure (classified by [`ClientError::retry_class`]) and the attempts made so
//! far into a [`Decision`]: a 429 waits `Retry-After` when HubSpot sent one, else a second for `SECONDLY`
//! and a growing, jittered wait (capped at the 10-second window) for `TEN_SECONDLY_ROLLING`, without using up
//! the attempt budget; a `DAILY` 429 gives up at once; 5xx, timeouts and dropped connections back off
//! exponentially with jitter for a bounded number of attempts; a 401 refreshes the token once.

use std::time::Duration;

use super::error::{ClientError, RateLimitPolicy, RetryClass};

/// Retry and backoff settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts for transient failures (5xx, timeouts, dropped connections), the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// First wait after a `TEN_SECONDLY_ROLLING` (or unnamed) 429 without `Retry-After`; doubles per 429 of
    /// the same call up to `rate_limit_max_wait`.
    pub rate_limit_wait: Duration,
    /// Largest wait after a 429 without `Retry-After` (the rolling window is 10 s).
    pub rate_limit_max_wait: Duration,
    /// Wait after a `SECONDLY` 429 without `Retry-After`.
    pub secondly_wait: Duration,
    /// 429s tolerated for one call before giving up.
    pub max_rate_limited: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            rate_limit_wait: Duration::from_secs(1),
            rate_limit_max_wait: Duration::from_secs(10),
            secondly_wait: Duration::from_secs(1),
            max_rate_limited: 100,
        }
    }
}

/// What happened so far during one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Transient failures so far.
    pub transient: u32,
    /// 429s so far.
    pub rate_limited: u32,
    /// Whether the call already refreshed its token after a 401.
    pub reauthenticated: bool,
    /// Failed requests so far, whatever the cause.
    pub failed: u32,
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait, then send again.
    Retry(Duration),
    /// Get a new access token, then send again.
    Reauthenticate,
    /// Return the error.
    GiveUp,
}

impl RetryPolicy {
    /// Decides what follows `error`, and records it in `attempts`. `idempotent`: whether sending the request
    /// twice is harmless (every read, including search and batch read, which are POSTs).
    pub fn decide(
        &self,
        error: &ClientError,
        attempts: &mut Attempts,
        idempotent: bool,
    ) -> Decision {
        attempts.failed += 1;
        match error.retry_class() {
            RetryClass::Unauthorized if !attempts.reauthenticated => {
                attempts.reauthenticated = true;
                Decision::Reauthenticate
            }
            RetryClass::RateLimited(policy, after)
                if attempts.rate_limited < self.max_rate_limited =>
            {
                let n = attempts.rate_limited;
                attempts.rate_limited += 1;
                Decision::Retry(after.unwrap_or_else(|| self.rate_limit_delay(policy, n)))
            }
            RetryClass::Transient { maybe_processed } if idempotent || !maybe_processed => {
                attempts.transient += 1;
                if attempts.transient >= self.max_attempts {
                    Decision::GiveUp
                } else {
                    Decision::Retry(self.backoff(attempts.transient - 1))
                }
            }
            _ => Decision::GiveUp,
        }
    }

    /// Wait after 429 number `n` (0-based) of one call without `Retry-After`.
    pub fn rate_limit_delay(&self, policy: RateLimitPolicy, n: u32) -> Duration {
        match policy {
            RateLimitPolicy::Secondly => self
                .secondly_wait
                .mul_f64(1.0 + rand::random::<f64>() * 0.2),
            _ => {
                let exp = self.rate_limit_wait.saturating_mul(1u32 << n.min(16));
                exp.min(self.rate_limit_max_wait)
                    .mul_f64(0.5 + rand::random::<f64>() * 0.5)
            }
        }
    }

    /// Delay before retry number `n` (0-based): `base * 2^n` capped at `max_delay`, times a random factor in
    /// `[0.5, 1.0)` so that callers that failed together do not retry together.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << n.min(20));
        exp.min(self.max_delay)
            .mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    /// Wraps the final error of a call that gave up after retrying.
    pub fn exhausted(&self, error: ClientError, attempts: &Attempts) -> ClientError {
        if attempts.failed > 1 && error.retry_class() != RetryClass::Fatal {
            ClientError::RetriesExhausted {
                attempts: attempts.failed,
                last: Box::new(error),
            }
        } else {
            error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> ClientError {
        ClientError::Server {
            endpoint: "search/contacts".into(),
            status: 503,
            message: String::new(),
        }
    }

    fn limited(policy: RateLimitPolicy, after: Option<Duration>) -> ClientError {
        ClientError::RateLimited {
            endpoint: "x".into(),
            policy,
            retry_after: after,
        }
    }

    #[test]
    fn transient_failures_back_off_then_give_up() {
        let p = RetryPolicy::default();
        let mut a = Attempts::default();
        for n in 0..p.max_attempts - 1 {
            match p.decide(&server(), &mut a, true) {
                Decision::Retry(d) => {
                    let full = p.base_delay.saturating_mul(1 << n).min(p.max_delay);
                    assert!(d >= full / 2 && d <= full, "retry {n}: {d:?} vs {full:?}");
                }
                other => panic!("retry {n}: {other:?}"),
            }
        }
        assert_eq!(p.decide(&server(), &mut a, true), Decision::GiveUp);
        assert!(matches!(
            p.exhausted(server(), &a),
            ClientError::RetriesExhausted { attempts: 6, .. }
        ));
    }

    #[test]
    fn rate_limits_honour_retry_after_grow_per_policy_and_spare_the_budget() {
        let p = RetryPolicy::default();
        let mut a = Attempts::default();
        assert_eq!(
            p.decide(
                &limited(
                    RateLimitPolicy::TenSecondlyRolling,
                    Some(Duration::from_secs(3))
                ),
                &mut a,
                true
            ),
            Decision::Retry(Duration::from_secs(3))
        );
        for n in 1..8u32 {
            match p.decide(
                &limited(RateLimitPolicy::TenSecondlyRolling, None),
                &mut a,
                true,
            ) {
                Decision::Retry(d) => {
                    let full = p
                        .rate_limit_wait
                        .saturating_mul(1 << n)
                        .min(p.rate_limit_max_wait);
                    assert!(d >= full / 2 && d <= full, "429 {n}: {d:?} vs {full:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        match p.decide(&limited(RateLimitPolicy::Secondly, None), &mut a, true) {
            Decision::Retry(d) => assert!(d >= p.secondly_wait && d <= p.secondly_wait * 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(a.transient, 0);
        assert_eq!(
            p.decide(&limited(RateLimitPolicy::Daily, None), &mut a, true),
            Decision::GiveUp,
            "the daily limit is not retried in-call"
        );
        let mut a = Attempts {
            rate_limited: p.max_rate_limited,
            ..Default::default()
        };
        assert_eq!(
            p.decide(&limited(RateLimitPolicy::Secondly, None), &mut a, true),
            Decision::GiveUp
        );
    }

    #[test]
    fn unauthorized_reauthenticates_once() {
        let p = RetryPolicy::default();
        let mut a = Attempts::default();
        let e = ClientError::Unauthorized {
            endpoint: "x".into(),
            category: "EXPIRED_AUTHENTICATION".into(),
        };
        assert_eq!(p.decide(&e, &mut a, true), Decision::Reauthenticate);
        assert_eq!(p.decide(&e, &mut a, true), Decision::GiveUp);
    }

    #[test]
    fn non_idempotent_requests_are_resent_only_when_unprocessed() {
        let p = RetryPolicy::default();
        let mut a = Attempts::default();
        assert_eq!(p.decide(&server(), &mut a, false), Decision::GiveUp);
        let refused = ClientError::Connect {
            endpoint: "x".into(),
            message: "refused".into(),
        };
        assert!(matches!(
            p.decide(&refused, &mut a, false),
            Decision::Retry(_)
        ));
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy::default();
        for n in [10, 20, 31, 1000] {
            assert!(p.backoff(n) <= p.max_delay);
            assert!(p.rate_limit_delay(RateLimitPolicy::Unknown, n) <= p.rate_limit_max_wait);
        }
    }
}
