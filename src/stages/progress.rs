//! One-shot mode bookkeeping: which stages of this run have caught up, and whether a stage has
//! consumed its input topics to their end.
//!
//! A stage may finish only when the stages feeding it *in this process* have finished (their
//! output is then complete) and its own stored positions reach the input topics' high
//! watermarks. Stages whose upstream is not in this run take the topics as they are.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use tokio::sync::watch;

use super::StageName;
use crate::error::Result;
use crate::kafka::StageConsumer;

/// Finished-flags of the stages in one run.
#[derive(Clone, Default)]
pub struct Finished {
    flags: HashMap<StageName, watch::Receiver<bool>>,
    senders: HashMap<StageName, std::sync::Arc<watch::Sender<bool>>>,
}

impl Finished {
    pub fn new(stages: &[StageName]) -> Self {
        let mut f = Finished::default();
        for &s in stages {
            let (tx, rx) = watch::channel(false);
            f.flags.insert(s, rx);
            f.senders.insert(s, std::sync::Arc::new(tx));
        }
        f
    }

    /// Marks `stage` finished.
    pub fn mark(&self, stage: StageName) {
        if let Some(tx) = self.senders.get(&stage) {
            let _ = tx.send(true);
        }
    }

    /// Whether every upstream stage of `stage` that is part of this run has finished.
    pub fn upstream_done(&self, stage: StageName) -> bool {
        upstream(stage)
            .iter()
            .all(|u| self.flags.get(u).is_none_or(|rx| *rx.borrow()))
    }
}

/// The stages whose output `stage` consumes.
pub fn upstream(stage: StageName) -> &'static [StageName] {
    match stage {
        StageName::Ingest => &[],
        StageName::Normalize => &[StageName::Ingest],
        StageName::Sink | StageName::Embed => &[StageName::Normalize],
        StageName::Match => &[StageName::Embed],
    }
}

/// Lag per (topic, partition): high watermark minus stored position (missing position = low
/// watermark, i.e. nothing read yet).
pub async fn lag(
    consumer: &StageConsumer,
    topics: &[String],
    positions: &HashMap<(String, i32), i64>,
) -> Result<HashMap<(String, i32), i64>> {
    let consumer = consumer.watermark_client();
    tokio::task::block_in_place(|| {
        let mut out = HashMap::new();
        for topic in topics {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let t = md
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .filter(|t| t.error().is_none() && !t.partitions().is_empty());
            let Some(t) = t else {
                // Metadata without the topic (or in error) says nothing about lag: report one
                // so one-shot mode never mistakes "unknown" for "caught up".
                out.insert((topic.clone(), -1), 1);
                continue;
            };
            for p in t.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
                let pos = positions
                    .get(&(topic.clone(), p.id()))
                    .copied()
                    .unwrap_or(low)
                    .max(low);
                out.insert((topic.clone(), p.id()), (high - pos).max(0));
            }
        }
        Ok(out)
    })
}
