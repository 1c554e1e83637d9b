//! The pipeline's processes under the soak: one `crmflow run` per stage instance, each with its
//! own log file; killed (SIGKILL) and started again by the chaos loop, restarted when they exit
//! on their own, and sampled for their peak resident memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::services::peak_rss_kib;
use crate::error::{Error, Result};

/// One stage instance: its name (`sink-2`) and its `crmflow` arguments.
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    pub args: Vec<String>,
}

/// What happened to one stage instance over the soak.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProcStats {
    /// SIGKILLs by the chaos loop.
    pub kills: u64,
    /// Exits the soak did not cause (a stage giving up while Kafka or Postgres was down).
    pub exits: u64,
    /// Starts after the first.
    pub restarts: u64,
    /// Largest `VmHWM` seen over all of its processes, KiB.
    pub peak_rss_kib: u64,
    /// Exit statuses of the exits it did not cause, with how often each came.
    pub exit_statuses: BTreeMap<String, u64>,
}

struct Slot {
    spec: Spec,
    child: Option<Child>,
    /// When an exited process may be started again (a stage failing at start is not
    /// restarted in a tight loop).
    start_after: Instant,
    stats: ProcStats,
}

/// Every stage instance, with how to start one.
pub struct Procs {
    exe: PathBuf,
    config: PathBuf,
    log_dir: PathBuf,
    env: Vec<(String, String)>,
    slots: Vec<Slot>,
}

impl Procs {
    /// `exe`: the crmflow binary; `config`: the TOML file every instance reads; `env`: secrets
    /// and settings added to each instance's (otherwise empty) environment.
    pub fn new(
        exe: PathBuf,
        config: PathBuf,
        log_dir: PathBuf,
        env: Vec<(String, String)>,
        specs: Vec<Spec>,
    ) -> Self {
        let now = Instant::now();
        Self {
            exe,
            config,
            log_dir,
            env,
            slots: specs
                .into_iter()
                .map(|spec| Slot {
                    spec,
                    child: None,
                    start_after: now,
                    stats: ProcStats::default(),
                })
                .collect(),
        }
    }

    fn spawn(&self, spec: &Spec) -> Result<Child> {
        let log_path = self.log_dir.join(format!("{}.log", spec.name));
        let log = open_log(&log_path)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&spec.args)
            // Only what the soak sets: no CRMFLOW_*/DB_*/KAFKA_* of the caller's shell may
            // point an instance at the shared services.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("CRMFLOW_CONFIG", &self.config)
            .env(
                "CRMFLOW_KAFKA__GROUP_INSTANCE_ID",
                format!("soak-{}", spec.name),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .kill_on_drop(true);
        cmd.spawn()
            .map_err(|e| Error::Other(format!("start {}: {e}", spec.name)))
    }

    /// Starts every instance that is not running.
    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            if self.slots[i].child.is_none() {
                let child = self.spawn(&self.slots[i].spec)?;
                self.slots[i].child = Some(child);
            }
        }
        Ok(())
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn sample(slot: &mut Slot) {
        if let Some(pid) = slot.child.as_ref().and_then(Child::id) {
            if let Some(kib) = peak_rss_kib(pid) {
                slot.stats.peak_rss_kib = slot.stats.peak_rss_kib.max(kib);
            }
        }
    }

    /// SIGKILLs instance `i` (its peak memory read first) and starts it again. Returns its
    /// name, or `None` when it was not running.
    pub async fn kill_and_restart(&mut self, i: usize) -> Result<Option<String>> {
        let slot = &mut self.slots[i];
        Self::sample(slot);
        let Some(mut child) = slot.child.take() else {
            return Ok(None);
        };
        // Child::start_kill sends SIGKILL to this child's own pid.
        let _ = child.start_kill();
        let _ = child.wait().await;
        slot.stats.kills += 1;
        slot.stats.restarts += 1;
        let name = slot.spec.name.clone();
        let child = self.spawn(&self.slots[i].spec)?;
        self.slots[i].child = Some(child);
        Ok(Some(name))
    }

    /// Samples memory and restarts instances that exited on their own (each at most once per
    /// `backoff`). Returns the names of those restarted.
    pub fn tend(&mut self, backoff: Duration) -> Result<Vec<String>> {
        let mut restarted = Vec::new();
        let now = Instant::now();
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            Self::sample(slot);
            if let Some(child) = slot.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    slot.child = None;
                    slot.stats.exits += 1;
                    *slot
                        .stats
                        .exit_statuses
                        .entry(status.to_string())
                        .or_default() += 1;
                    slot.start_after = now + backoff;
                }
            }
            if slot.child.is_none() && now >= slot.start_after {
                let child = self.spawn(&self.slots[i].spec)?;
                let slot = &mut self.slots[i];
                slot.child = Some(child);
                slot.stats.restarts += 1;
                restarted.push(slot.spec.name.clone());
            }
        }
        Ok(restarted)
    }

    /// Whether every instance is running.
    pub fn all_running(&self) -> bool {
        self.slots.iter().all(|s| s.child.is_some())
    }

    /// Per-instance statistics, by name.
    pub fn stats(&self) -> BTreeMap<String, ProcStats> {
        self.slots
            .iter()
            .map(|s| (s.spec.name.clone(), s.stats.clone()))
            .collect()
    }

    /// Stops every instance: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop_all(&mut self, grace: Duration) {
        for slot in &mut self.slots {
            Self::sample(slot);
            if let Some(pid) = slot.child.as_ref().and_then(Child::id) {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for slot in &mut self.slots {
            if let Some(mut child) = slot.child.take() {
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }
}

fn open_log(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

fn io(e: std::io::Error) -> Error {
    Error::Other(e.to_string())
}
