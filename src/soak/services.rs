//! The soak's own PostgreSQL and Kafka: `scripts/services` run with another state directory and
//! other ports (never the shared 5432/9092 instances), crashed with SIGKILL and started again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Where the soak's services live and how `scripts/services` reaches them.
#[derive(Debug, Clone)]
pub struct Services {
    /// `scripts/services`.
    pub script: PathBuf,
    /// `CRMFLOW_STATE_DIR` of the soak's instances (data, logs, pid files).
    pub state_dir: PathBuf,
    pub db_port: u16,
    /// Kafka's client port; the controller and SASL_SSL listeners take the next two ports.
    pub kafka_port: u16,
}

/// Which service a crash hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Kafka,
    Postgres,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::Postgres => "postgres",
        }
    }
}

impl Services {
    /// `scripts/services <verb>` against the soak's state directory and ports; its output goes
    /// to `<state_dir>/services.log`.
    async fn script(&self, verb: &str) -> Result<()> {
        std::fs::create_dir_all(&self.state_dir).map_err(io)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.state_dir.join("services.log"))
            .map_err(io)?;
        let status = tokio::process::Command::new(&self.script)
            .arg(verb)
            .env("CRMFLOW_STATE_DIR", &self.state_dir)
            .env("DB_PORT", self.db_port.to_string())
            .env("KAFKA_PORT", self.kafka_port.to_string())
            .env("KAFKA_CONTROLLER_PORT", (self.kafka_port + 1).to_string())
            .env("KAFKA_SASL_SSL_PORT", (self.kafka_port + 2).to_string())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .status()
            .await
            .map_err(io)?;
        if !status.success() {
            return Err(Error::Other(format!(
                "{} {verb} failed ({status}); see {}",
                self.script.display(),
                self.state_dir.join("services.log").display()
            )));
        }
        Ok(())
    }

    /// Starts whatever is not running (after a crash: PostgreSQL recovers from its WAL, Kafka
    /// from its logs) and returns once both answer.
    pub async fn up(&self) -> Result<Duration> {
        let t = Instant::now();
        self.script("up").await?;
        Ok(t.elapsed())
    }

    /// The running postmaster's pid, from its pid file.
    pub fn pg_pid(&self) -> Option<i32> {
        let pid_file = self.state_dir.join("pg/data/postmaster.pid");
        let first = std::fs::read_to_string(pid_file).ok()?;
        let pid: i32 = first.lines().next()?.trim().parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "postgres").then_some(pid)
    }

    /// The running broker's pid, from its pid file (checked against its command line).
    pub fn kafka_pid(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.state_dir.join("kafka/kafka.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        let props = self.state_dir.join("kafka/server.properties");
        (cmdline.contains("kafka.Kafka") && cmdline.contains(&*props.to_string_lossy()))
            .then_some(pid)
    }

    /// SIGKILLs the service (PostgreSQL: the postmaster and every backend it forked, so no
    /// orphan keeps the shared memory), without any shutdown.
    pub fn crash(&self, which: Service) -> Result<()> {
        let pid = match which {
            Service::Kafka => self.kafka_pid(),
            Service::Postgres => self.pg_pid(),
        }
        .ok_or_else(|| Error::Other(format!("{} is not running", which.as_str())))?;
        let mut victims = vec![pid];
        if which == Service::Postgres {
            victims.extend(children_of(pid));
        }
        for p in &victims {
            sigkill(*p);
        }
        // Wait until the processes are gone (the postmaster's children die with it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while victims.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops both services (fast shutdown), for the end of the soak.
    pub fn stop(&self) {
        if let Some(pid) = self.kafka_pid() {
            signal(pid, "TERM");
            wait_gone(pid, Duration::from_secs(30));
        }
        if let Some(pid) = self.pg_pid() {
            // SIGINT: PostgreSQL's fast shutdown.
            signal(pid, "INT");
            wait_gone(pid, Duration::from_secs(30));
        }
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Other(e.to_string())
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_state(&stat), Some('Z') | Some('X') | None),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32, max: Duration) {
    let deadline = Instant::now() + max;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive(pid) {
        sigkill(pid);
    }
}

/// The process state letter and parent pid of a `/proc/<pid>/stat` line (the command name, in
/// parentheses, may hold spaces).
fn stat_fields(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

fn stat_state(stat: &str) -> Option<char> {
    stat_fields(stat).map(|(s, _)| s)
}

/// Pids whose parent is `parent`.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| stat_fields(&s))
                .is_some_and(|(_, ppid)| ppid == parent)
        })
        .collect()
}

/// Sends SIGKILL to one process by id.
pub fn sigkill(pid: i32) {
    signal(pid, "KILL");
}

fn signal(pid: i32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Peak resident set size (`VmHWM`) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The default `scripts/services` next to the running binary's repository, else `./scripts/services`.
pub fn default_script() -> PathBuf {
    let local = Path::new("scripts/services");
    local.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_spaces_and_parentheses_in_the_command_name() {
        let stat = "4242 (postgres: crmflow (x) idle) S 4200 4242 4242 0 -1";
        assert_eq!(stat_fields(stat), Some(('S', 4200)));
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        let kib = peak_rss_kib(std::process::id()).expect("VmHWM");
        assert!(kib > 0);
        assert!(alive(std::process::id() as i32));
    }
}
