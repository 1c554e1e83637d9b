//! `crmflow replay`: rewind a stage to an earlier point of its input topics.
//!
//! Targets are resolved per partition (`earliest`, an offset, or a time via the broker's time
//! index), then written to `stage_offsets` together with a bump of the stage's
//! `replay_epoch`, in one transaction that locks the control row. Running instances see the new
//! epoch and seek; a stopped stage picks the offsets up at its next assignment. For the
//! normalize stage, whose positions live in Kafka, the targets are also committed to its
//! consumer group (possible only while the group has no members; otherwise the members seek and
//! commit themselves).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kafka::{self, Topics};
use crate::runtime::{offsets, StageName};

/// Where to rewind to.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplayFrom {
    Earliest,
    Offset(i64),
    /// Epoch milliseconds.
    Time(i64),
}

impl std::str::FromStr for ReplayFrom {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "earliest" {
            return Ok(ReplayFrom::Earliest);
        }
        if let Ok(o) = s.parse::<i64>() {
            return if o >= 0 {
                Ok(ReplayFrom::Offset(o))
            } else {
                Err("offset must be >= 0".into())
            };
        }
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| ReplayFrom::Time(t.timestamp_millis()))
            .map_err(|_| {
                format!("--from takes `earliest`, an offset or an RFC 3339 time, not {s:?}")
            })
    }
}

/// The input topics of a stage that can be replayed.
pub fn stage_inputs(cfg: &Config, stage: StageName) -> Result<Vec<String>> {
    let topics = crate::pipeline::input_topics(cfg, stage);
    if topics.is_empty() {
        return Err(Error::Other(format!(
            "stage {} has no Kafka input to replay",
            stage.as_str()
        )));
    }
    Ok(topics)
}

/// One partition's new position.
#[derive(Debug, Clone, PartialEq)]
pub struct Rewound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Rewinds `stage`. Returns the new positions.
pub async fn replay(
    cfg: &Config,
    stage: StageName,
    from: &ReplayFrom,
    partition: Option<i32>,
) -> Result<Vec<Rewound>> {
    let topics = Topics::new(&cfg.kafka);
    let group = topics.group(stage.as_str());
    let inputs = stage_inputs(cfg, stage)?;
    let targets = resolve(cfg, &inputs, from, partition)?;
    if targets.is_empty() {
        return Err(Error::Other("no partition matched".into()));
    }
    crate::store::migrate(cfg).await?;
    let pool = crate::store::pool(cfg)?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO stage_control (stage, replay_epoch) VALUES ($1, 0) ON CONFLICT (stage) DO NOTHING",
        &[&group],
    )
    .await?;
    tx.execute(
        "SELECT 1 FROM stage_control WHERE stage = $1 FOR UPDATE",
        &[&group],
    )
    .await?;
    let positions: offsets::Positions = targets
        .iter()
        .map(|r| ((r.topic.clone(), r.partition), r.offset))
        .collect();
    offsets::store(&tx, &group, &positions).await?;
    tx.execute(
        "UPDATE stage_control SET replay_epoch = replay_epoch + 1, updated_at = now() WHERE stage = $1",
        &[&group],
    )
    .await?;
    tx.commit().await?;

    if stage == StageName::Normalize {
        commit_to_group(cfg, &group, &targets).await;
    }
    Ok(targets)
}

/// Resolves `from` to an offset per partition of `inputs`.
fn resolve(
    cfg: &Config,
    inputs: &[String],
    from: &ReplayFrom,
    only: Option<i32>,
) -> Result<Vec<Rewound>> {
    let consumer: BaseConsumer = kafka::client_config(&cfg.kafka)
        .set("group.id", "crmflow-replay-resolver")
        .set("enable.auto.commit", "false")
        .create()?;
    let md = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut out = Vec::new();
    let mut by_time = TopicPartitionList::new();
    let mut bounds: HashMap<(String, i32), (i64, i64)> = HashMap::new();
    for t in md
        .topics()
        .iter()
        .filter(|t| inputs.iter().any(|x| x == t.name()))
    {
        for p in t.partitions() {
            if only.is_some_and(|o| o != p.id()) {
                continue;
            }
            let (low, high) =
                consumer.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))?;
            bounds.insert((t.name().to_owned(), p.id()), (low, high));
            match from {
                ReplayFrom::Earliest => out.push(Rewound {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    offset: low,
                }),
                ReplayFrom::Offset(o) => out.push(Rewound {
                    topic: t.name().to_owned(),
                    partition: p.id(),
                    offset: (*o).clamp(low, high),
                }),
                ReplayFrom::Time(ms) => {
                    by_time.add_partition_offset(t.name(), p.id(), Offset::Offset(*ms))?;
                }
            }
        }
    }
    if by_time.count() > 0 {
        let found = consumer.offsets_for_times(by_time, Duration::from_secs(10))?;
        for e in found.elements() {
            let (_, high) = bounds[&(e.topic().to_owned(), e.partition())];
            // No message at or after the time: the partition resumes at its end.
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => high,
            };
            out.push(Rewound {
                topic: e.topic().to_owned(),
                partition: e.partition(),
                offset,
            });
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(out)
}

/// Commits targets to a Kafka-offset group; retries while a just-stopped member's session
/// expires, and leaves it to live members when the group stays active.
async fn commit_to_group(cfg: &Config, group: &str, targets: &[Rewound]) {
    let mut tpl = TopicPartitionList::new();
    for r in targets {
        let _ = tpl.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.offset));
    }
    let consumer: BaseConsumer = match kafka::client_config(&cfg.kafka)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(%error, "cannot create a consumer to commit replay offsets");
            return;
        }
    };
    for attempt in 0..15 {
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => return,
            Err(error) => {
                tracing::info!(%error, attempt, "group has live members; waiting or leaving the seek to them");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parses_earliest_offsets_and_times() {
        assert_eq!("earliest".parse::<ReplayFrom>(), Ok(ReplayFrom::Earliest));
        assert_eq!("42".parse::<ReplayFrom>(), Ok(ReplayFrom::Offset(42)));
        assert_eq!(
            "2026-01-02T03:04:05Z".parse::<ReplayFrom>(),
            Ok(ReplayFrom::Time(1_767_323_045_000))
        );
        assert!("-1".parse::<ReplayFrom>().is_err());
        assert!("yesterday".parse::<ReplayFrom>().is_err());
    }
}
