//! Client-side rate limiting: stay under HubSpot's limits instead of bouncing off them.
//!
//! - The 10-second burst limit: a GCRA token bucket (`governor`, as the Bullhorn client uses) of
//!   `requests_per_10s` with a burst of a tenth of it, so any 10-second window holds at most 1.1 × the budget
//!   (99 for the default 90, under the smallest tier's 100).
//! - Search's own per-second limit: a second bucket of `search_requests_per_sec`, burst 1, taken by search
//!   calls only (they also take the general one).
//! - The server's view: every answer's `X-HubSpot-RateLimit-*` headers are recorded ([`RateLimitSnapshot`]);
//!   when `Remaining` falls to `pause_at_remaining` the next requests wait a tenth of the interval, so a
//!   budget shared with other apps of the same account is respected too.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

/// The rate-limit headers of the last answer that had them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitSnapshot {
    /// `X-HubSpot-RateLimit-Max`: requests per interval.
    pub max: Option<u64>,
    /// `X-HubSpot-RateLimit-Remaining`.
    pub remaining: Option<u64>,
    /// `X-HubSpot-RateLimit-Interval-Milliseconds`.
    pub interval_ms: Option<u64>,
    /// `X-HubSpot-RateLimit-Daily`.
    pub daily: Option<u64>,
    /// `X-HubSpot-RateLimit-Daily-Remaining`.
    pub daily_remaining: Option<u64>,
    /// `X-HubSpot-RateLimit-Secondly`.
    pub secondly: Option<u64>,
    /// `X-HubSpot-RateLimit-Secondly-Remaining`.
    pub secondly_remaining: Option<u64>,
}

impl RateLimitSnapshot {
    /// Reads the headers; `None` when the answer had none of them (e.g. search answers).
    pub fn from_headers(h: &HeaderMap) -> Option<Self> {
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let s = Self {
            max: get("x-hubspot-ratelimit-max"),
            remaining: get("x-hubspot-ratelimit-remaining"),
            interval_ms: get("x-hubspot-ratelimit-interval-milliseconds"),
            daily: get("x-hubspot-ratelimit-daily"),
            daily_remaining: get("x-hubspot-ratelimit-daily-remaining"),
            secondly: get("x-hubspot-ratelimit-secondly"),
            secondly_remaining: get("x-hubspot-ratelimit-secondly-remaining"),
        };
        (s != Self::default()).then_some(s)
    }
}

/// The limiters of one client.
pub struct Limits {
    general: DefaultDirectRateLimiter,
    search: DefaultDirectRateLimiter,
    pause_at_remaining: u32,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<RateLimitSnapshot>,
    paused_until: Option<Instant>,
}

impl Limits {
    /// Limiters for `requests_per_10s` and `search_per_sec` (both at least 1).
    pub fn new(requests_per_10s: u32, search_per_sec: u32, pause_at_remaining: u32) -> Self {
        let n = requests_per_10s.max(1);
        let period = Duration::from_secs(10) / n;
        let burst = NonZeroU32::new((n / 10).max(1)).unwrap_or(NonZeroU32::MIN);
        let general = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let s = NonZeroU32::new(search_per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            general: RateLimiter::direct(general),
            search: RateLimiter::direct(Quota::per_second(s).allow_burst(NonZeroU32::MIN)),
            pause_at_remaining,
            state: Mutex::new(State::default()),
        }
    }

    /// Waits until one request may be sent (`search`: also take a search permit).
    pub async fn until_ready(&self, search: bool) {
        loop {
            let paused = self.state.lock().paused_until;
            match paused {
                Some(at) if Instant::now() < at => tokio::time::sleep_until(at).await,
                _ => break,
            }
        }
        if search {
            self.search.until_ready().await;
        }
        self.general.until_ready().await;
    }

    /// Records an answer's headers; pauses when the server says the window is nearly spent.
    pub fn observe(&self, headers: &HeaderMap) {
        let Some(snap) = RateLimitSnapshot::from_headers(headers) else {
            return;
        };
        let mut st = self.state.lock();
        st.last = Some(snap);
        if let (Some(rem), Some(interval)) = (snap.remaining, snap.interval_ms) {
            if rem <= u64::from(self.pause_at_remaining) {
                let until = Instant::now() + Duration::from_millis(interval / 10);
                st.paused_until = Some(st.paused_until.map_or(until, |p| p.max(until)));
            }
        }
    }

    /// The last headers seen.
    pub fn snapshot(&self) -> Option<RateLimitSnapshot> {
        self.state.lock().last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn snapshot_reads_the_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(RateLimitSnapshot::from_headers(&h), None);
        h.insert("X-HubSpot-RateLimit-Max", HeaderValue::from_static("100"));
        h.insert(
            "X-HubSpot-RateLimit-Remaining",
            HeaderValue::from_static("7"),
        );
        h.insert(
            "X-HubSpot-RateLimit-Daily-Remaining",
            HeaderValue::from_static("249000"),
        );
        let s = RateLimitSnapshot::from_headers(&h).expect("some");
        assert_eq!(s.max, Some(100));
        assert_eq!(s.remaining, Some(7));
        assert_eq!(s.daily_remaining, Some(249_000));
        assert_eq!(s.interval_ms, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearly_spent_window_pauses_the_next_request() {
        let l = Limits::new(1_000, 100, 2);
        let mut h = HeaderMap::new();
        h.insert(
            "X-HubSpot-RateLimit-Interval-Milliseconds",
            HeaderValue::from_static("10000"),
        );
        h.insert(
            "X-HubSpot-RateLimit-Remaining",
            HeaderValue::from_static("1"),
        );
        l.observe(&h);
        let t0 = Instant::now();
        l.until_ready(false).await;
        assert!(Instant::now() - t0 >= Duration::from_millis(1_000));
    }

    #[tokio::test]
    async fn the_ten_second_bucket_spreads_requests() {
        // governor keeps real time: 100 per 10 s is a burst of 10, then one every 100 ms.
        let l = Limits::new(100, 100, 0);
        let t0 = std::time::Instant::now();
        for _ in 0..15 {
            l.until_ready(false).await;
        }
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t0.elapsed()
        );
    }
}
