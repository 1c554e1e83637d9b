//! Outage logging: one line when a dependency (Kafka, Postgres) goes away, saying what is
//! affected, a reminder at most every [`REMINDER`], and one line when it is back — instead of a
//! line per failed poll, per retry and per librdkafka event (a 10 s broker outage used to print
//! hundreds of identical ERROR and WARN lines).
//!
//! [`OutageLog`] is the pure rate limiter (table-tested below with explicit instants); the
//! process-wide [`kafka`] and [`postgres`] trackers wrap one each and write the lines. Callers
//! report failures with what they were doing (`failed("sink", &error)`) and successes with
//! `ok()`; both are cheap enough for every poll.

use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Longest silence while a dependency stays away.
pub const REMINDER: Duration = Duration::from_secs(30);

/// A line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The dependency just went away.
    Down {
        affected: Vec<String>,
        error: String,
    },
    /// Still away after `for_secs`; `failures` reported since the last line.
    Still {
        for_secs: u64,
        failures: u64,
        affected: Vec<String>,
        error: String,
    },
    /// Back after `after_secs`, `failures` reported in all.
    Back { after_secs: u64, failures: u64 },
}

/// The state of one dependency, and the decision which reports become lines.
#[derive(Debug, Default)]
pub struct OutageLog {
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    since: Instant,
    last_line: Instant,
    failures_since_line: u64,
    failures: u64,
    affected: BTreeSet<String>,
    last_error: String,
}

impl OutageLog {
    /// A failure reported by `who`.
    pub fn failed(&mut self, now: Instant, who: &str, error: &str) -> Option<Line> {
        match &mut self.down {
            None => {
                self.down = Some(Down {
                    since: now,
                    last_line: now,
                    failures_since_line: 0,
                    failures: 1,
                    affected: BTreeSet::from([who.to_owned()]),
                    last_error: error.to_owned(),
                });
                Some(Line::Down {
                    affected: vec![who.to_owned()],
                    error: error.to_owned(),
                })
            }
            Some(d) => {
                d.failures += 1;
                d.failures_since_line += 1;
                d.affected.insert(who.to_owned());
                error.clone_into(&mut d.last_error);
                if now.duration_since(d.last_line) < REMINDER {
                    return None;
                }
                d.last_line = now;
                let failures = std::mem::take(&mut d.failures_since_line);
                Some(Line::Still {
                    for_secs: now.duration_since(d.since).as_secs(),
                    failures,
                    affected: d.affected.iter().cloned().collect(),
                    error: d.last_error.clone(),
                })
            }
        }
    }

    /// A success: the dependency answers.
    pub fn ok(&mut self, now: Instant) -> Option<Line> {
        let d = self.down.take()?;
        Some(Line::Back {
            after_secs: now.duration_since(d.since).as_secs(),
            failures: d.failures,
        })
    }

    /// Whether the dependency is currently considered away.
    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }
}

/// One process-wide dependency tracker that writes the lines.
pub struct Tracker {
    name: &'static str,
    log: Mutex<OutageLog>,
    /// Lock-free fast path for `ok()` on every poll.
    down: std::sync::atomic::AtomicBool,
}

impl Tracker {
    const fn new(name: &'static str) -> Self {
        Self {
            name,
            log: Mutex::new(OutageLog { down: None }),
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// `who` (a stage, a client) failed to reach the dependency.
    pub fn failed(&self, who: &str, error: &dyn std::fmt::Display) {
        let line = {
            let mut log = self.log.lock();
            let line = log.failed(Instant::now(), who, &error.to_string());
            self.down.store(true, std::sync::atomic::Ordering::Relaxed);
            line
        };
        self.write(line);
    }

    /// The dependency answered.
    pub fn ok(&self) {
        if !self.down.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let line = {
            let mut log = self.log.lock();
            self.down.store(false, std::sync::atomic::Ordering::Relaxed);
            log.ok(Instant::now())
        };
        self.write(line);
    }

    /// Whether it is considered away.
    pub fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn write(&self, line: Option<Line>) {
        let dependency = self.name;
        match line {
            None => {}
            Some(Line::Down { affected, error }) => tracing::error!(
                dependency,
                affected = %affected.join(","),
                %error,
                "{dependency} unreachable: affected work waits and retries (next reminder in 30 s)"
            ),
            Some(Line::Still {
                for_secs,
                failures,
                affected,
                error,
            }) => tracing::warn!(
                dependency,
                down_secs = for_secs,
                failures,
                affected = %affected.join(","),
                %error,
                "{dependency} still unreachable"
            ),
            Some(Line::Back {
                after_secs,
                failures,
            }) => tracing::info!(
                dependency,
                down_secs = after_secs,
                failures,
                "{dependency} reachable again"
            ),
        }
    }
}

static KAFKA: LazyLock<Tracker> = LazyLock::new(|| Tracker::new("kafka"));
static POSTGRES: LazyLock<Tracker> = LazyLock::new(|| Tracker::new("postgres"));

/// Kafka (all brokers of the cluster).
pub fn kafka() -> &'static Tracker {
    &KAFKA
}

/// Postgres.
pub fn postgres() -> &'static Tracker {
    &POSTGRES
}

/// Per-key rate limit for other repeated warnings (at most one line per key per [`REMINDER`]);
/// returns how many were suppressed since the last line when one may be written.
pub fn throttle(key: &str) -> Option<u64> {
    static LAST: LazyLock<Mutex<std::collections::HashMap<String, (Instant, u64)>>> =
        LazyLock::new(Default::default);
    let now = Instant::now();
    let mut map = LAST.lock();
    match map.get_mut(key) {
        Some((at, n)) if now.duration_since(*at) < REMINDER => {
            *n += 1;
            None
        }
        Some((at, n)) => {
            *at = now;
            Some(std::mem::take(n))
        }
        None => {
            map.insert(key.to_owned(), (now, 0));
            Some(0)
        }
    }
}

/// Whether a Postgres error means the server is unreachable (not a statement's own failure).
pub fn postgres_unreachable(e: &crate::store::StoreError) -> bool {
    use crate::store::StoreError as S;
    use tokio_postgres::error::SqlState;
    let pg = match e {
        S::Pg(e) | S::Pool(deadpool_postgres::PoolError::Backend(e)) => e,
        S::Pool(_) => return true,
        _ => return false,
    };
    pg.is_closed()
        || pg.as_db_error().is_none()
        || matches!(pg.code(), Some(c) if *c == SqlState::ADMIN_SHUTDOWN
            || *c == SqlState::CANNOT_CONNECT_NOW
            || *c == SqlState::CONNECTION_FAILURE
            || *c == SqlState::CRASH_SHUTDOWN)
}

/// A retriable failure of `stage` doing `what`: an outage report when Postgres or Kafka is
/// unreachable, else a warning (throttled per stage and step).
pub fn retrying(stage: &'static str, what: &str, error: &crate::error::Error, attempt: u32) {
    use crate::error::Error as E;
    match error {
        E::Store(e) if postgres_unreachable(e) => postgres().failed(stage, error),
        E::Kafka(e) if crate::kafka::logs::is_connectivity(e) => kafka().failed(stage, error),
        _ => {
            if let Some(suppressed) = throttle(&format!("{stage}:{what}")) {
                tracing::warn!(%error, attempt, suppressed, stage, "{what} failed, retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_down_reminders_every_30s_one_line_back() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut log = OutageLog::default();
        assert_eq!(log.ok(at(0)), None, "up stays silent");
        assert!(matches!(
            log.failed(at(0), "normalize", "AllBrokersDown"),
            Some(Line::Down { .. })
        ));
        // A 10 s outage with failures every 30 ms (what librdkafka and three stages report):
        // no further line.
        let mut lines = 0;
        for i in 1..=330u64 {
            let who = ["normalize", "sink", "librdkafka"][i as usize % 3];
            lines += usize::from(log.failed(at(i * 30), who, "AllBrokersDown").is_some());
        }
        assert_eq!(lines, 0);
        assert!(log.is_down());
        // Past 30 s: one reminder, listing everything affected so far.
        match log.failed(at(30_000), "sink", "Connection refused") {
            Some(Line::Still {
                for_secs,
                failures,
                affected,
                error,
            }) => {
                assert_eq!(for_secs, 30);
                assert_eq!(failures, 331);
                assert_eq!(affected, ["librdkafka", "normalize", "sink"]);
                assert_eq!(error, "Connection refused");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(log.failed(at(45_000), "sink", "x"), None);
        assert!(matches!(
            log.failed(at(60_001), "sink", "x"),
            Some(Line::Still { for_secs: 60, .. })
        ));
        assert_eq!(
            log.ok(at(61_000)),
            Some(Line::Back {
                after_secs: 61,
                failures: 334
            })
        );
        assert_eq!(log.ok(at(61_001)), None, "back only once");
        assert!(!log.is_down());
        // The next outage starts afresh.
        assert!(matches!(
            log.failed(at(70_000), "embed", "refused"),
            Some(Line::Down { affected, .. }) if affected == ["embed"]
        ));
    }

    #[test]
    fn throttle_lets_one_line_per_key_through() {
        assert_eq!(throttle("unit-test-a"), Some(0));
        assert_eq!(throttle("unit-test-a"), None);
        assert_eq!(throttle("unit-test-a"), None);
        assert_eq!(throttle("unit-test-b"), Some(0));
    }
}
