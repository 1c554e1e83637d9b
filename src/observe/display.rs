//! Progress of long one-shot work (initial backfill, catch-up after a replay, the demo): in a
//! terminal, one live line per stage with counts, rate, lag and ETA; otherwise a structured
//! progress log per stage every `every` (batches, records, total, duration — the fields the old
//! service logged), so schedulers' logs show the same.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::runtime::StageName;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live lines on stderr (a terminal).
    Bars,
    /// `tracing` info events.
    Logs,
}

impl Mode {
    /// Bars when stderr is a terminal, logs otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Logs
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Last {
    out: u64,
    at: Option<Instant>,
    rate: f64,
}

/// One stage's line: `normalize   in 120,000  out 119,500  rejected 500  40,210/s  lag 80,000  eta 2s`.
fn line(stage: &str, s: &super::StageState, rate: f64) -> String {
    let lag = s.lag.map_or("-".to_string(), thousands);
    let eta = match s.lag {
        Some(0) => "caught up".to_string(),
        Some(l) if rate > 0.5 => format!("eta {}s", (l as f64 / rate).ceil() as u64),
        _ => String::new(),
    };
    format!(
        "{stage:<9} in {:>10}  out {:>10}  rejected {:>7}  {:>9}/s  lag {:>9}  {eta}",
        thousands(s.records_in),
        thousands(s.records_out),
        thousands(s.rejected),
        thousands(rate.round() as u64),
        lag,
    )
}

/// `1234567` as `1,234,567`.
pub fn thousands<N: Into<i128>>(n: N) -> String {
    let n: i128 = n.into();
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Shows progress of `stages` until `stop` is cancelled.
pub async fn run(stages: Vec<StageName>, mode: Mode, every: Duration, stop: CancellationToken) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {msg}").expect("static template");
    let bars: HashMap<&'static str, ProgressBar> = if mode == Mode::Bars {
        stages
            .iter()
            .map(|s| {
                let b = multi.add(ProgressBar::new_spinner());
                b.set_style(style.clone());
                (s.as_str(), b)
            })
            .collect()
    } else {
        HashMap::new()
    };
    let tick = if mode == Mode::Bars {
        Duration::from_millis(500)
    } else {
        every
    };
    let started = Instant::now();
    let mut last: HashMap<&'static str, Last> = HashMap::new();
    loop {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(tick) => false,
            _ = stop.cancelled() => true,
        };
        for &stage in &stages {
            let name = stage.as_str();
            let Some(s) = super::stage(name) else {
                continue;
            };
            let l = last.entry(name).or_default();
            let now = Instant::now();
            if let Some(at) = l.at {
                let dt = now.duration_since(at).as_secs_f64();
                if dt > 0.0 {
                    let inst = (s.records_out.saturating_sub(l.out)) as f64 / dt;
                    // Smooth a little so the ETA does not jump with every batch.
                    l.rate = if l.rate == 0.0 {
                        inst
                    } else {
                        0.6 * inst + 0.4 * l.rate
                    };
                }
            }
            if stopped {
                // The last line shows the run's average, not the last half second's.
                let secs = started.elapsed().as_secs_f64();
                l.rate = if secs > 0.0 {
                    s.records_out as f64 / secs
                } else {
                    0.0
                };
            }
            l.out = s.records_out;
            l.at = Some(now);
            match mode {
                Mode::Bars => {
                    if let Some(b) = bars.get(name) {
                        b.set_message(line(name, &s, l.rate));
                        b.tick();
                    }
                }
                Mode::Logs => tracing::info!(
                    stage = name,
                    batches = s.batches,
                    records = s.records_out,
                    records_in = s.records_in,
                    rejected = s.rejected,
                    total = s.lag.map(|lag| s.records_out as i64 + lag),
                    lag = s.lag,
                    rate_per_sec = l.rate.round() as u64,
                    duration_seconds = started.elapsed().as_secs(),
                    "progress"
                ),
            }
        }
        if stopped {
            for b in bars.values() {
                b.finish();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators_and_lines_show_eta() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(thousands(1_000u64), "1,000");
        assert_eq!(thousands(1_234_567u64), "1,234,567");
        assert_eq!(thousands(-45_000i64), "-45,000");
        let mut s = super::super::StageState::new();
        s.records_in = 12_000;
        s.records_out = 11_500;
        s.rejected = 500;
        s.lag = Some(20_000);
        let l = line("normalize", &s, 10_000.0);
        assert!(l.contains("out     11,500"), "{l}");
        assert!(l.contains("eta 2s"), "{l}");
        s.lag = Some(0);
        assert!(line("sink", &s, 0.0).contains("caught up"));
    }
}
