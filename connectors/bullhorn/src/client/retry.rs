//! Retry decisions and backoff, in one place.
//!
//! [`RetryPolicy::decide`] turns a failure (classified by [`ClientError::retry_class`]) and the attempts made so
//! far into a [`Decision`]: 429s wait 1 s (Bullhorn's documented advice) or `Retry-After` and do not use up the
//! attempt budget; 5xx, timeouts and dropped connections back off exponentially with jitter up to a cap, for a
//! bounded number of attempts, and are resent only when the request is idempotent or certainly unprocessed; a
//! 401 re-authenticates once.

use std::time::Duration;

use super::error::{ClientError, RetryClass};

/// Retry and backoff settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts for transient failures (5xx, timeouts, dropped connections), the first included.
    pub max_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// Wait after a 429 without `Retry-After`.
    pub rate_limit_wait: Duration,
    /// 429s tolerated for one call before giving up (Bullhorn says "repeat until successful"; a bound keeps a
    /// misconfigured budget from hanging a process forever).
    pub max_rate_limited: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            rate_limit_wait: Duration::from_secs(1),
            max_rate_limited: 600,
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
    /// Whether the call already re-authenticated after a 401.
    pub reauthenticated: bool,
    /// Failed requests so far, whatever the cause.
    pub failed: u32,
}

impl Attempts {
    /// Requests that failed so far (each decision follows one failed request).
    pub fn total(&self) -> u32 {
        self.failed
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait, then send again.
    Retry(Duration),
    /// Log in again (refresh, or the full flow if the refresh fails), then send again.
    Reauthenticate,
    /// Return the error.
    GiveUp,
}

impl RetryPolicy {
    /// Decides what follows `error`, and records it in `attempts`. `idempotent`: whether sending the request
    /// twice is harmless (everything but an event poll, which consumes its batch).
    pub fn decide(
        &self,
        error: &ClientError,
        attempts: &mut Attempts,
        idempotent: bool,
    ) -> Decision {
        attempts.failed += 1;
        match error.retry_class() {
            RetryClass::Session if !attempts.reauthenticated => {
                attempts.reauthenticated = true;
                Decision::Reauthenticate
            }
            RetryClass::RateLimited(after) if attempts.rate_limited < self.max_rate_limited => {
                attempts.rate_limited += 1;
                Decision::Retry(after.unwrap_or(self.rate_limit_wait))
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

    /// Delay before retry number `n` (0-based): `base * 2^n` capped at `max_delay`, times a random factor in
    /// `[0.5, 1.0)` so that concurrent callers that failed together do not retry together.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << n.min(20));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(0.5 + rand::random::<f64>() * 0.5)
    }

    /// Wraps the final error of a call that gave up after retrying.
    pub fn exhausted(&self, error: ClientError, attempts: &Attempts) -> ClientError {
        if attempts.total() > 1 && error.retry_class() != RetryClass::Fatal {
            ClientError::RetriesExhausted {
                attempts: attempts.total(),
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
            endpoint: "search/Candidate".into(),
            status: 503,
            message: String::new(),
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
        let e = p.exhausted(server(), &a);
        assert!(
            matches!(e, ClientError::RetriesExhausted { attempts: 6, .. }),
            "{e}"
        );
    }

    #[test]
    fn backoff_is_capped() {
        let p = RetryPolicy::default();
        for n in [10, 20, 31, 1000] {
            assert!(p.backoff(n) <= p.max_delay);
        }
    }

    #[test]
    fn rate_limits_wait_one_second_or_retry_after_and_do_not_use_the_budget() {
        let p = RetryPolicy::default();
        let mut a = Attempts::default();
        let plain = ClientError::RateLimited {
            endpoint: "x".into(),
            retry_after: None,
        };
        let told = ClientError::RateLimited {
            endpoint: "x".into(),
            retry_after: Some(Duration::from_secs(3)),
        };
        for _ in 0..50 {
            assert_eq!(
                p.decide(&plain, &mut a, true),
                Decision::Retry(Duration::from_secs(1))
            );
        }
        assert_eq!(
            p.decide(&told, &mut a, false),
            Decision::Retry(Duration::from_secs(3))
        );
        assert_eq!(a.transient, 0);
        let mut a = Attempts {
            rate_limited: p.max_rate_limited,
            ..Default::default()
        };
        assert_eq!(p.decide(&plain, &mut a, true), Decision::GiveUp);
    }

    #[test]
    fn unauthorized_reauthenticates_once() {
        let p = RetryPolicy::default();
        let mut a = Attempts::default();
        let e = ClientError::InvalidSession {
            endpoint: "x".into(),
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
        let fatal = ClientError::Api {
            endpoint: "x".into(),
            status: 404,
            key: None,
            message: String::new(),
        };
        assert_eq!(p.decide(&fatal, &mut a, true), Decision::GiveUp);
    }
}
