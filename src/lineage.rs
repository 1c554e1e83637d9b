//! `crmflow lineage <crm>:<entity>:<id>`: where a row came from, read from what is stored —
//! the row (CRM version, raw topic/partition/offset, event id, canonical partition/offset,
//! `written_at`, trace id), its vectors and matches, and the dead letters of that record in
//! `crm.dlq` — with a trace link when `telemetry.trace_ui_url` is set.
//!
//! Read-only: never migrates, never joins a consumer group. Four answers: a live row, a
//! tombstone, a record known only from the DLQ, and an unknown id.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::Config;
use crate::dlq;
use crate::error::{Error, Result};
use crate::kafka::trace::TraceParent;
use crate::kafka::Topics;

/// Which record: `<crm>:<entity>:<id>`, the entity canonical (`candidate`, `position`) or the
/// CRM's own name (`Candidate`, `JobOrder`, `contact`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordRef {
    pub crm: String,
    /// `candidate` or `position`.
    pub entity: &'static str,
    pub id: String,
}

impl std::str::FromStr for RecordRef {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut parts = s.splitn(3, ':');
        let (Some(crm), Some(entity), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{s:?}: expected <crm>:<entity>:<id>, e.g. bullhorn:candidate:4711"
            ));
        };
        let entity = canonical_entity(entity)
            .ok_or_else(|| format!("{entity:?}: entity must be candidate or position"))?;
        if crm.is_empty() || id.is_empty() {
            return Err(format!("{s:?}: crm and id must not be empty"));
        }
        Ok(Self {
            crm: crm.to_owned(),
            entity,
            id: id.to_owned(),
        })
    }
}

/// The canonical entity of a canonical or CRM entity name.
pub fn canonical_entity(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "candidate" | "candidates" | "contact" | "lead" => Some("candidate"),
        "position" | "positions" | "joborder" | "job" | "deal" => Some("position"),
        _ => None,
    }
}

/// What kind of answer this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// A live row.
    Row,
    /// A row deleted in the CRM, kept as a tombstone.
    Tombstone,
    /// No row: every version was dead-lettered.
    DlqOnly,
    /// Nothing stored about this record.
    Unknown,
}

/// The row as the sink wrote it.
#[derive(Debug, Clone, Serialize)]
pub struct RowInfo {
    pub table: &'static str,
    /// CRM version (epoch ms, Bullhorn `dateLastModified`).
    pub source_version: i64,
    /// The same as a time: when the CRM last modified the record.
    pub crm_modified_at: Option<String>,
    pub deleted_at: Option<String>,
    pub written_at: String,
    pub event_id: String,
    pub raw_topic: String,
    pub raw_partition: i32,
    pub raw_offset: i64,
    pub canonical_topic: String,
    /// Absent for rows written before migration V4.
    pub canonical_partition: Option<i32>,
    pub canonical_offset: Option<i64>,
    pub trace_id: Option<String>,
}

/// One vector of the record.
#[derive(Debug, Clone, Serialize)]
pub struct VectorInfo {
    pub model: String,
    pub content_hash: String,
    pub source_version: i64,
    pub updated_at: String,
    pub trace_id: Option<String>,
    /// Entries in this record's top-k list for the model.
    pub matches: i64,
}

/// One dead letter of the record.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterInfo {
    /// `partition:offset` in `crm.dlq` (what `crmflow dlq show` takes).
    pub position: String,
    pub time: Option<String>,
    pub stage: Option<String>,
    pub class: Option<String>,
    pub rule: Option<String>,
    pub reason: Option<String>,
    pub source: String,
    pub trace_id: Option<String>,
}

/// A record's journey.
#[derive(Debug, Clone, Serialize)]
pub struct Journey {
    pub record: String,
    pub found: Found,
    /// One sentence that answers "where did this come from?".
    pub summary: String,
    pub row: Option<RowInfo>,
    pub vectors: Vec<VectorInfo>,
    pub dead_letters: Vec<DeadLetterInfo>,
    /// The latest trace of the record (the row's, else a vector's, else the last dead letter's).
    pub trace_id: Option<String>,
    /// `telemetry.trace_ui_url` with the trace id filled in.
    pub trace_url: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn ms(ms: i64) -> Option<String> {
    DateTime::from_timestamp_millis(ms).map(rfc3339)
}

fn trace_of(traceparent: Option<&str>) -> Option<String> {
    traceparent
        .and_then(TraceParent::parse)
        .map(|t| t.trace_id_hex())
}

/// Whether a dead letter is about `r`: its key is the record id on one of the CRM's raw topics
/// of that entity, or `<crm>:<id>` on the entity's canonical topic.
fn is_about(e: &dlq::Entry, r: &RecordRef, topics: &Topics) -> bool {
    let Some(key) = e.key.as_deref().map(String::from_utf8_lossy) else {
        return false;
    };
    let source = e.header(dlq::H_SOURCE_TOPIC).unwrap_or("");
    let raw_prefix = format!("{}crm.raw.{}.", topics.prefix(), r.crm);
    if let Some(raw_entity) = source.strip_prefix(&raw_prefix) {
        return key == r.id && canonical_entity(raw_entity) == Some(r.entity);
    }
    source == topics.canonical(r.entity) && key == crate::model::canonical_key(&r.crm, &r.id)
}

/// Reads everything stored about `r`.
pub async fn read(cfg: &Config, r: &RecordRef) -> Result<Journey> {
    let pool = crate::store::pool(cfg)?;
    let client = pool.get().await?;
    crate::store::require_schema(&client, &cfg.postgres.schema).await?;
    let topics = Topics::new(&cfg.kafka);
    let table = if r.entity == "candidate" {
        "candidates"
    } else {
        "positions"
    };
    let row = client
        .query_opt(
            &format!(
                "SELECT source_version, deleted_at, written_at, event_id, raw_topic, raw_partition,
                        raw_offset, canonical_partition, canonical_offset, trace_id
                 FROM {table} WHERE crm = $1 AND crm_id = $2"
            ),
            &[&r.crm, &r.id],
        )
        .await?
        .map(|row| RowInfo {
            table,
            source_version: row.get(0),
            crm_modified_at: ms(row.get(0)),
            deleted_at: row.get::<_, Option<DateTime<Utc>>>(1).map(rfc3339),
            written_at: rfc3339(row.get(2)),
            event_id: row.get(3),
            raw_topic: row.get(4),
            raw_partition: row.get(5),
            raw_offset: row.get(6),
            canonical_topic: topics.canonical(r.entity),
            canonical_partition: row.get(7),
            canonical_offset: row.get(8),
            trace_id: row.get(9),
        });
    let vectors: Vec<VectorInfo> = client
        .query(
            "SELECT e.model, e.content_hash, e.source_version, e.updated_at, e.traceparent,
                    (SELECT count(*) FROM matches m WHERE m.model = e.model AND m.from_entity = e.entity
                       AND m.from_crm = e.crm AND m.from_id = e.crm_id)
             FROM embeddings e WHERE e.entity = $1 AND e.crm = $2 AND e.crm_id = $3 ORDER BY e.model",
            &[&r.entity, &r.crm, &r.id],
        )
        .await?
        .iter()
        .map(|v| VectorInfo {
            model: v.get(0),
            content_hash: v.get(1),
            source_version: v.get(2),
            updated_at: rfc3339(v.get(3)),
            trace_id: trace_of(v.get(4)),
            matches: v.get(5),
        })
        .collect();
    let dead_letters = {
        let cfg = cfg.clone();
        let r = r.clone();
        tokio::task::spawn_blocking(move || {
            let topics = Topics::new(&cfg.kafka);
            let mut out = Vec::new();
            dlq::scan(&cfg, &Default::default(), |e| {
                if is_about(&e, &r, &topics) {
                    let h = |k: &str| e.header(k).map(str::to_owned);
                    out.push(DeadLetterInfo {
                        position: format!("{}:{}", e.partition, e.offset),
                        time: e.timestamp_ms.and_then(ms),
                        stage: h(dlq::H_STAGE),
                        class: h(dlq::H_CLASS),
                        rule: h(dlq::H_RULE),
                        reason: h(dlq::H_REASON),
                        source: format!(
                            "{}:{}:{}",
                            e.header(dlq::H_SOURCE_TOPIC).unwrap_or("-"),
                            e.header(dlq::H_SOURCE_PARTITION).unwrap_or("-"),
                            e.header(dlq::H_SOURCE_OFFSET).unwrap_or("-")
                        ),
                        trace_id: trace_of(e.header(crate::kafka::trace::TRACEPARENT)),
                    });
                }
                true
            })
            .map(|_| out)
        })
        .await
        .map_err(|e| Error::Other(e.to_string()))??
    };
    Ok(assemble(cfg, r, row, vectors, dead_letters))
}

/// The answer from what was found (pure, so the wording is tested without services).
pub fn assemble(
    cfg: &Config,
    r: &RecordRef,
    row: Option<RowInfo>,
    vectors: Vec<VectorInfo>,
    dead_letters: Vec<DeadLetterInfo>,
) -> Journey {
    let record = format!("{}:{}:{}", r.crm, r.entity, r.id);
    let last_dl = dead_letters.last();
    let (found, summary) = match (&row, last_dl) {
        (Some(row), _) if row.deleted_at.is_some() => (
            Found::Tombstone,
            format!(
                "tombstone: deleted in {} at version {} ({}); the row is kept with deleted_at, its vectors and matches were removed",
                r.crm,
                row.source_version,
                row.crm_modified_at.as_deref().unwrap_or("?"),
            ),
        ),
        (Some(row), _) => (
            Found::Row,
            format!(
                "live row in {}, version {} ({}), written {}",
                row.table,
                row.source_version,
                row.crm_modified_at.as_deref().unwrap_or("?"),
                row.written_at
            ),
        ),
        (None, Some(dl)) => (
            Found::DlqOnly,
            format!(
                "never written: {} dead letter(s), the last rejected by {} rule {} ({})",
                dead_letters.len(),
                dl.stage.as_deref().unwrap_or("?"),
                dl.rule.as_deref().unwrap_or("?"),
                dl.reason.as_deref().unwrap_or("?"),
            ),
        ),
        (None, None) => (
            Found::Unknown,
            format!(
                "unknown: no row, no vector and no dead letter for {record} (schema {}, topic prefix {:?}); \
                 check the id, or whether ingest has reached it yet",
                cfg.postgres.schema, cfg.kafka.topic_prefix
            ),
        ),
    };
    let trace_id = row
        .as_ref()
        .and_then(|r| r.trace_id.clone())
        .or_else(|| vectors.iter().find_map(|v| v.trace_id.clone()))
        .or_else(|| last_dl.and_then(|d| d.trace_id.clone()));
    let trace_url = match (&trace_id, &cfg.telemetry.trace_ui_url) {
        (Some(t), Some(url)) if !url.is_empty() => Some(url.replace("{trace_id}", t)),
        _ => None,
    };
    Journey {
        record,
        found,
        summary,
        row,
        vectors,
        dead_letters,
        trace_id,
        trace_url,
    }
}

/// The journey as text, in pipeline order.
pub fn render(j: &Journey) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "{}: {}", j.record, j.summary);
    if let Some(r) = &j.row {
        let _ = writeln!(
            s,
            "  crm       version {} (modified {})",
            r.source_version,
            r.crm_modified_at.as_deref().unwrap_or("?")
        );
        let _ = writeln!(
            s,
            "  raw       {}:{}:{}  event {}",
            r.raw_topic, r.raw_partition, r.raw_offset, r.event_id
        );
        match (r.canonical_partition, r.canonical_offset) {
            (Some(p), Some(o)) => {
                let _ = writeln!(s, "  canonical {}:{p}:{o}", r.canonical_topic);
            }
            _ => {
                let _ = writeln!(
                    s,
                    "  canonical {} (offset not recorded: written before migration V4)",
                    r.canonical_topic
                );
            }
        }
        let _ = writeln!(
            s,
            "  row       {} version {}, written_at {}{}",
            r.table,
            r.source_version,
            r.written_at,
            r.deleted_at
                .as_deref()
                .map(|d| format!(", deleted_at {d}"))
                .unwrap_or_default()
        );
    }
    for v in &j.vectors {
        let _ = writeln!(
            s,
            "  vector    model {} hash {} version {} updated_at {}, {} matches",
            v.model, v.content_hash, v.source_version, v.updated_at, v.matches
        );
    }
    if j.row.as_ref().is_some_and(|r| r.deleted_at.is_none()) && j.vectors.is_empty() {
        let _ = writeln!(
            s,
            "  vector    none (not embedded yet, or the embed stage is not running)"
        );
    }
    for d in &j.dead_letters {
        let _ = writeln!(
            s,
            "  dlq       {} {} stage {} rule {} class {}: {} (from {})",
            d.position,
            d.time.as_deref().unwrap_or("-"),
            d.stage.as_deref().unwrap_or("-"),
            d.rule.as_deref().unwrap_or("-"),
            d.class.as_deref().unwrap_or("-"),
            d.reason.as_deref().unwrap_or("-"),
            d.source
        );
    }
    match (&j.trace_id, &j.trace_url) {
        (Some(_), Some(url)) => {
            let _ = writeln!(s, "  trace     {url}");
        }
        (Some(t), None) => {
            let _ = writeln!(s, "  trace     {t} (set telemetry.trace_ui_url for a link)");
        }
        (None, _) => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_refs_parse_canonical_and_crm_entity_names() {
        let r: RecordRef = "bullhorn:candidate:4711".parse().unwrap();
        assert_eq!(
            (r.crm.as_str(), r.entity, r.id.as_str()),
            ("bullhorn", "candidate", "4711")
        );
        let r: RecordRef = "bullhorn:JobOrder:9".parse().unwrap();
        assert_eq!(r.entity, "position");
        let r: RecordRef = "hubspot:contact:a:b".parse().unwrap();
        assert_eq!((r.entity, r.id.as_str()), ("candidate", "a:b"));
        for bad in [
            "bullhorn:candidate",
            "bullhorn:widget:1",
            ":candidate:1",
            "x:candidate:",
        ] {
            assert!(bad.parse::<RecordRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_and_trace_link_answers() {
        let mut cfg = Config::default();
        let r: RecordRef = "bullhorn:candidate:1".parse().unwrap();
        let j = assemble(&cfg, &r, None, vec![], vec![]);
        assert_eq!(j.found, Found::Unknown);
        assert!(j.summary.starts_with("unknown:"), "{}", j.summary);
        assert!(j.trace_url.is_none());
        cfg.telemetry.trace_ui_url = Some("http://localhost:16686/trace/{trace_id}".into());
        let dl = DeadLetterInfo {
            position: "0:3".into(),
            time: None,
            stage: Some("normalize".into()),
            class: Some("validate".into()),
            rule: Some("candidate.email.format".into()),
            reason: Some("not an email".into()),
            source: "crm.raw.bullhorn.candidate:0:7".into(),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        };
        let j = assemble(&cfg, &r, None, vec![], vec![dl]);
        assert_eq!(j.found, Found::DlqOnly);
        assert!(
            j.summary.contains("candidate.email.format"),
            "{}",
            j.summary
        );
        assert_eq!(
            j.trace_url.as_deref(),
            Some("http://localhost:16686/trace/4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert!(render(&j).contains("dlq       0:3"));
    }
}
