//! Topic names and their creation. Canonical topics are log-compacted (the latest version of
//! every record stays, so replaying them from the beginning is a full backfill); raw topics and
//! the dead-letter topic keep history by time.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;

/// Topic and consumer-group names of one deployment (all carry the configured prefix).
#[derive(Debug, Clone)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    pub fn new(cfg: &KafkaConfig) -> Self {
        Self {
            prefix: cfg.topic_prefix.clone(),
        }
    }

    /// `crm.raw.<crm>.<entity>`, entity lower-cased (`crm.raw.bullhorn.candidate`).
    pub fn raw(&self, crm: &str, entity: &str) -> String {
        format!("{}crm.raw.{}.{}", self.prefix, crm, entity.to_lowercase())
    }

    /// `crm.canonical.<entity>` (`candidate`, `position`).
    pub fn canonical(&self, entity: &str) -> String {
        format!("{}crm.canonical.{}", self.prefix, entity)
    }

    /// The dead-letter topic.
    pub fn dlq(&self) -> String {
        format!("{}crm.dlq", self.prefix)
    }

    /// A stage's consumer group, `crmflow-<stage>`.
    pub fn group(&self, stage: &str) -> String {
        format!("{}crmflow-{}", self.prefix, stage)
    }

    /// The prefix itself (used to recognise our topics).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// One topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Log compaction (canonical topics) instead of time retention.
    pub compacted: bool,
}

/// Creates the topics that do not exist yet; existing ones are left as they are. Checks the
/// connection first, so a bad credential or certificate is a one-line error at once.
pub async fn ensure_topics(cfg: &KafkaConfig, specs: &[TopicSpec]) -> Result<(), KafkaError> {
    super::check_connection(cfg, Duration::from_secs(30)).await?;
    let admin: AdminClient<DefaultClientContext> = super::client_config(cfg).create()?;
    let new: Vec<NewTopic> = specs
        .iter()
        .map(|s| {
            let t = NewTopic::new(
                &s.name,
                s.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            );
            if s.compacted {
                t.set("cleanup.policy", "compact")
                    .set("min.compaction.lag.ms", "60000")
            } else {
                t
            }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, %code, "topic creation failed");
                })
            }
        }
    }
    Ok(())
}
