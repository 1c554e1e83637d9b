//! One-shot mode bookkeeping: which stages of this run have caught up, and whether a stage has
//! consumed its input topics to their end.
//!
//! A stage may finish only when the stages feeding it *in this process* have finished (their
//! output is then complete) and its own stored positions reach the input topics' high
//! watermarks. Stages whose upstream is not in this run take the topics as they are.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::watch;

use super::StageName;
use crate::error::Result;
use crate::kafka::StageConsumer;

const TIMEOUT: Duration = Duration::from_secs(10);

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
        StageName::Ingest | StageName::Ingress => &[],
        StageName::Normalize => &[StageName::Ingest],
        StageName::Sink | StageName::Embed => &[StageName::Normalize],
        StageName::Match => &[StageName::Embed],
    }
}

/// One input partition of a stage: where the stage is and where the partition ends.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    /// `-1` for a topic the broker's metadata does not list (its lag is then 1: unknown is
    /// never mistaken for caught up).
    pub partition: i32,
    /// The next offset the stage will process (its committed or stored position).
    pub position: i64,
    /// The partition's high watermark.
    pub end: i64,
    pub lag: i64,
}

/// Lag of every partition of `topics` (blocking): high watermark minus the position that
/// `positions` gives for it (none: the low watermark, i.e. nothing read yet). `positions` is
/// asked once, with the partitions the metadata lists.
pub fn partition_lags<C: ConsumerContext>(
    client: &BaseConsumer<C>,
    topics: &[String],
    positions: impl FnOnce(&[(String, i32)]) -> Result<HashMap<(String, i32), i64>>,
) -> Result<Vec<PartitionLag>> {
    let mut parts = Vec::new();
    let mut out = Vec::new();
    for topic in topics {
        let md = client.fetch_metadata(Some(topic), TIMEOUT)?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty());
        match t {
            Some(t) => parts.extend(t.partitions().iter().map(|p| (topic.clone(), p.id()))),
            None => out.push(PartitionLag {
                topic: topic.clone(),
                partition: -1,
                position: 0,
                end: 0,
                lag: 1,
            }),
        }
    }
    let positions = positions(&parts)?;
    for (topic, partition) in parts {
        let (low, high) = client.fetch_watermarks(&topic, partition, TIMEOUT)?;
        let position = positions
            .get(&(topic.clone(), partition))
            .copied()
            .unwrap_or(low)
            .max(low);
        out.push(PartitionLag {
            topic,
            partition,
            position,
            end: high,
            lag: (high - position).max(0),
        });
    }
    Ok(out)
}

/// The offsets `consumer`'s group committed for `parts` (blocking).
pub fn committed_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    parts: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in parts {
        tpl.add_partition(t, *p);
    }
    Ok(consumer
        .committed_offsets(tpl, TIMEOUT)?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
            _ => None,
        })
        .collect())
}

/// Lag per (topic, partition) of a stage whose positions are `positions` (see
/// [`partition_lags`]).
pub async fn lag(
    consumer: &StageConsumer,
    topics: &[String],
    positions: &HashMap<(String, i32), i64>,
) -> Result<HashMap<(String, i32), i64>> {
    let client = consumer.watermark_client();
    let lags =
        tokio::task::block_in_place(|| partition_lags(client, topics, |_| Ok(positions.clone())))?;
    Ok(lags
        .into_iter()
        .map(|l| ((l.topic, l.partition), l.lag))
        .collect())
}
