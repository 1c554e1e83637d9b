//! Command line of `crmflow soak`: [`SoakArgs`] and the `MIN-MAX` [`Interval`]s of its chaos.

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;

/// Command line of `crmflow soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// Stop the chaos after this many minutes (whichever of --minutes and --kills comes first).
    /// Default: 10, or no time limit when --kills is given (so `--kills 1000` means 1,000).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Stop the chaos after this many kills of stage processes (and, when crashes are on, at
    /// least one crash each of Kafka and PostgreSQL).
    #[arg(long)]
    pub kills: Option<u64>,
    /// Seconds between kills, as MIN-MAX (a random time in between each time), e.g. `1-5`.
    #[arg(long, default_value = "1-5")]
    pub kill_interval: Interval,
    /// Seconds between crashes of Kafka or PostgreSQL (in turn); 0: none.
    #[arg(long, default_value_t = 150)]
    pub infra_every: u64,
    /// Seconds between CRM/ML fault storms, as MIN-MAX; `0-0`: none.
    #[arg(long, default_value = "10-30")]
    pub storm_every: Interval,
    /// Record changes per second each CRM simulator makes during the chaos.
    #[arg(long, default_value_t = 10.0)]
    pub changes_per_sec: f64,
    /// Bullhorn candidates (HubSpot and Salesforce contacts: half as many).
    #[arg(long, default_value_t = 2_000)]
    pub candidates: usize,
    /// Bullhorn job orders (HubSpot jobs and Salesforce positions: half as many).
    #[arg(long, default_value_t = 200)]
    pub job_orders: usize,
    /// Longest wait for the pipeline to converge once the chaos stopped, seconds.
    #[arg(long, default_value_t = 900)]
    pub converge_timeout: u64,
    /// State directory of the soak's own PostgreSQL and Kafka, logs and report.
    #[arg(long, default_value = "/var/tmp/crmflow-soak")]
    pub state_dir: PathBuf,
    /// PostgreSQL port of the soak's own instance (below the ephemeral range 32768-60999, so
    /// no outgoing connection holds it when the database restarts).
    #[arg(long, default_value_t = 25432)]
    pub db_port: u16,
    /// Kafka port of the soak's own broker (the controller and SASL_SSL listeners take the next
    /// two; below the ephemeral range, like the database's).
    #[arg(long, default_value_t = 29092)]
    pub kafka_port: u16,
    /// `scripts/services`, which installs and starts PostgreSQL and Kafka.
    #[arg(long, default_value = "scripts/services")]
    pub services_script: PathBuf,
    /// Leave the soak's PostgreSQL and Kafka running at the end (for a post-mortem).
    #[arg(long)]
    pub keep_services: bool,
    /// `RUST_LOG` of the stage processes (their logs: <state-dir>/logs/<instance>.log).
    #[arg(long, default_value = "warn")]
    pub stage_log: String,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
}

impl SoakArgs {
    /// How long the chaos may last: `--minutes`; without it 10 minutes, or no limit when
    /// `--kills` is given.
    pub fn time_limit(&self) -> Option<Duration> {
        match (self.minutes, self.kills) {
            (Some(m), _) => Some(Duration::from_secs_f64((m * 60.0).clamp(0.0, 1e9))),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(600)),
        }
    }
}

/// `MIN-MAX` seconds (or one number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub min: f64,
    pub max: f64,
}

impl std::str::FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let num = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{v:?} is not a number of seconds"))
        };
        let (min, max) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if min > max {
            return Err(format!("{s}: MIN is above MAX"));
        }
        Ok(Interval { min, max })
    }
}

impl Interval {
    pub fn is_off(&self) -> bool {
        self.max <= 0.0
    }

    pub fn sample(&self) -> Duration {
        let s = if self.max > self.min {
            rand::rng().random_range(self.min..=self.max)
        } else {
            self.min
        };
        Duration::from_secs_f64(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cli: &[&str]) -> SoakArgs {
        use clap::{Args, FromArgMatches};
        let cmd = SoakArgs::augment_args(clap::Command::new("soak"));
        let m = cmd.no_binary_name(true).get_matches_from(cli);
        SoakArgs::from_arg_matches(&m).unwrap()
    }

    #[test]
    fn kills_without_minutes_have_no_time_limit() {
        assert_eq!(args(&[]).time_limit(), Some(Duration::from_secs(600)));
        assert_eq!(args(&["--kills", "1000"]).time_limit(), None);
        assert_eq!(
            args(&["--kills", "30", "--minutes", "6"]).time_limit(),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            args(&["--minutes", "0.5"]).time_limit(),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn intervals_parse_as_min_max_or_one_number() {
        assert_eq!(
            "1-5".parse::<Interval>().unwrap(),
            Interval { min: 1.0, max: 5.0 }
        );
        assert_eq!(
            "2".parse::<Interval>().unwrap(),
            Interval { min: 2.0, max: 2.0 }
        );
        assert!("5-1".parse::<Interval>().is_err());
        assert!("x".parse::<Interval>().is_err());
        assert!("0-0".parse::<Interval>().unwrap().is_off());
        let d = "1-2".parse::<Interval>().unwrap().sample();
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2));
    }
}
