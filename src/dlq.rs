//! The dead-letter queue: `crm.dlq` holds every record a stage could not process, with the
//! original key and bytes and headers that say why (`error.stage`, `error.class`,
//! `error.rule`, `error.reason`) and where it came from (`source.topic`, `source.partition`,
//! `source.offset`, `traceparent`). `dlq.replay_count` counts how often a record was sent back,
//! so `crmflow dlq replay` can refuse to loop a record forever.

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::error::Result;
use crate::kafka::{trace::TraceParent, Delivery, Producer};

pub const H_STAGE: &str = "error.stage";
pub const H_CLASS: &str = "error.class";
pub const H_RULE: &str = "error.rule";
pub const H_REASON: &str = "error.reason";
pub const H_TIME: &str = "error.time";
pub const H_SOURCE_TOPIC: &str = "source.topic";
pub const H_SOURCE_PARTITION: &str = "source.partition";
pub const H_SOURCE_OFFSET: &str = "source.offset";
pub const H_REPLAY_COUNT: &str = "dlq.replay_count";

/// One record for the DLQ.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub stage: &'a str,
    /// `decode`, `transform`, `validation`, `sink`, `embed`.
    pub class: &'a str,
    /// The named rule that failed, when one did.
    pub rule: Option<&'a str>,
    pub reason: &'a str,
    pub source_topic: &'a str,
    pub source_partition: i32,
    pub source_offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub trace: Option<TraceParent>,
    /// Replays so far (carried over from the input's `dlq.replay_count`).
    pub replay_count: u32,
}

/// Reads `dlq.replay_count` from a message's headers (0 when absent).
pub fn replay_count<H: Headers>(headers: Option<&H>) -> u32 {
    header_str(headers, H_REPLAY_COUNT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A header's value as UTF-8.
pub fn header_str<'h, H: Headers>(headers: Option<&'h H>, key: &str) -> Option<&'h str> {
    headers?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Error reasons can quote input; keep headers small and on one line.
fn clip(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(1000) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

/// Builds the DLQ headers for `dl`.
pub fn headers(dl: &DeadLetter<'_>) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(10);
    let reason = clip(dl.reason);
    let partition = dl.source_partition.to_string();
    let offset = dl.source_offset.to_string();
    let replays = dl.replay_count.to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut pairs: Vec<(&str, &str)> = vec![
        (H_STAGE, dl.stage),
        (H_CLASS, dl.class),
        (H_REASON, &reason),
        (H_TIME, &now),
        (H_SOURCE_TOPIC, dl.source_topic),
        (H_SOURCE_PARTITION, &partition),
        (H_SOURCE_OFFSET, &offset),
        (H_REPLAY_COUNT, &replays),
    ];
    if let Some(rule) = dl.rule {
        pairs.push((H_RULE, rule));
    }
    let tp = dl.trace.map(|t| t.to_header());
    if let Some(tp) = &tp {
        pairs.push((crate::kafka::trace::TRACEPARENT, tp));
    }
    for (key, value) in pairs {
        h = h.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    h
}

/// Sends one dead letter; the returned future resolves when Kafka has it.
pub async fn send(producer: &Producer, topic: &str, dl: &DeadLetter<'_>) -> Result<Delivery> {
    tracing::debug!(
        stage = dl.stage,
        class = dl.class,
        rule = dl.rule.unwrap_or("-"),
        reason = %clip(dl.reason),
        source.topic = dl.source_topic,
        source.partition = dl.source_partition,
        source.offset = dl.source_offset,
        "record sent to the dead-letter queue"
    );
    Ok(producer
        .send(
            topic,
            dl.key.unwrap_or_default(),
            dl.payload.unwrap_or_default(),
            headers(dl),
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_reason_rule_and_source() {
        let tp = TraceParent::current_or_new();
        let dl = DeadLetter {
            stage: "normalize",
            class: "validation",
            rule: Some("position.salary.non_negative"),
            reason: "salary -5 is negative\nsecond line",
            source_topic: "crm.raw.bullhorn.joborder",
            source_partition: 2,
            source_offset: 77,
            key: Some(b"9"),
            payload: Some(b"bytes"),
            trace: Some(tp),
            replay_count: 1,
        };
        let h = headers(&dl);
        assert_eq!(header_str(Some(&h), H_STAGE), Some("normalize"));
        assert_eq!(
            header_str(Some(&h), H_RULE),
            Some("position.salary.non_negative")
        );
        assert_eq!(
            header_str(Some(&h), H_REASON),
            Some("salary -5 is negative second line")
        );
        assert_eq!(header_str(Some(&h), H_SOURCE_OFFSET), Some("77"));
        assert_eq!(replay_count(Some(&h)), 1);
        assert_eq!(
            crate::kafka::trace::extract(Some(&h)).map(|t| t.trace_id),
            Some(tp.trace_id)
        );
        let long = "x".repeat(5000);
        assert!(clip(&long).chars().count() <= 1001);
    }
}

/// One dead letter as read back from the topic.
#[derive(Debug, Clone)]
pub struct Entry {
    pub partition: i32,
    pub offset: i64,
    /// Broker timestamp, epoch ms.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Entry {
    /// A header's value.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Which dead letters an operator means.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub stage: Option<String>,
    pub rule: Option<String>,
    /// Only entries at or after this time, epoch ms.
    pub since_ms: Option<i64>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        self.stage
            .as_deref()
            .is_none_or(|s| e.header(H_STAGE) == Some(s))
            && self
                .rule
                .as_deref()
                .is_none_or(|r| e.header(H_RULE) == Some(r))
            && self
                .since_ms
                .is_none_or(|t| e.timestamp_ms.is_some_and(|ts| ts >= t))
    }
}

/// Reads every dead letter present now (beginning to high watermark) that `filter` matches,
/// calling `f` for each. Uses no consumer group, so it never disturbs anything.
pub fn scan(
    cfg: &crate::config::Config,
    filter: &Filter,
    mut f: impl FnMut(Entry) -> bool,
) -> Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;

    let topic = crate::kafka::Topics::new(&cfg.kafka).dlq();
    let consumer: BaseConsumer = crate::kafka::client_config(&cfg.kafka)
        .set("group.id", "crmflow-dlq-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut ends = std::collections::HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(10))?;
            if high > low {
                ends.insert(p.id(), high);
                tpl.add_partition_offset(&topic, p.id(), Offset::Offset(low))?;
            }
        }
    }
    if ends.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() && std::time::Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let p = msg.partition();
        if ends.get(&p).is_some_and(|&end| msg.offset() + 1 >= end) {
            ends.remove(&p);
        }
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let entry = Entry {
            partition: p,
            offset: msg.offset(),
            timestamp_ms: msg.timestamp().to_millis(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        };
        if filter.matches(&entry) && !f(entry) {
            break;
        }
    }
    Ok(())
}

/// What `crmflow dlq replay` did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Sent back to their source topic.
    pub replayed: u64,
    /// Already replayed by an earlier run.
    pub already_replayed: u64,
    /// Refused: replayed `max_replays` times already.
    pub exhausted: u64,
}

/// Sends matching dead letters back to their source topics (once each), with
/// `dlq.replay_count` incremented. With `dry_run` nothing is sent or recorded.
pub async fn replay(
    cfg: &crate::config::Config,
    filter: &Filter,
    dry_run: bool,
    max_replays: u32,
) -> Result<ReplayReport> {
    let topic = crate::kafka::Topics::new(&cfg.kafka).dlq();
    let entries = {
        let cfg = cfg.clone();
        let filter = filter.clone();
        tokio::task::spawn_blocking(move || {
            let mut entries = Vec::new();
            scan(&cfg, &filter, |e| {
                entries.push(e);
                true
            })
            .map(|_| entries)
        })
        .await
        .map_err(|e| crate::error::Error::Other(e.to_string()))??
    };
    crate::store::migrate(cfg).await?;
    let pool = crate::store::pool(cfg)?;
    let client = pool.get().await?;
    let producer = Producer::new(&cfg.kafka)?;
    let mut report = ReplayReport::default();
    for e in entries {
        let done = client
            .query_opt(
                "SELECT 1 FROM dlq_replays WHERE dlq_topic = $1 AND dlq_partition = $2 AND dlq_offset = $3",
                &[&topic, &e.partition, &e.offset],
            )
            .await?
            .is_some();
        if done {
            report.already_replayed += 1;
            continue;
        }
        let count: u32 = e
            .header(H_REPLAY_COUNT)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if count >= max_replays {
            report.exhausted += 1;
            continue;
        }
        let Some(source) = e.header(H_SOURCE_TOPIC) else {
            report.exhausted += 1;
            continue;
        };
        if !dry_run {
            let mut h = OwnedHeaders::new_with_capacity(2);
            let next = (count + 1).to_string();
            h = h.insert(Header {
                key: H_REPLAY_COUNT,
                value: Some(next.as_bytes()),
            });
            if let Some(tp) = e.header(crate::kafka::trace::TRACEPARENT) {
                h = h.insert(Header {
                    key: crate::kafka::trace::TRACEPARENT,
                    value: Some(tp.as_bytes()),
                });
            }
            producer
                .send_and_wait(
                    source,
                    e.key.as_deref().unwrap_or_default(),
                    e.payload.as_deref().unwrap_or_default(),
                    h,
                )
                .await?;
            client
                .execute(
                    "INSERT INTO dlq_replays (dlq_topic, dlq_partition, dlq_offset) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&topic, &e.partition, &e.offset],
                )
                .await?;
        }
        report.replayed += 1;
    }
    Ok(report)
}
