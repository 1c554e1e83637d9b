//! The soak's verdict: Postgres and the dead-letter topic against the simulators' ground truth.
//!
//! For every record a simulator holds (deleted and archived ones included), what the pipeline
//! must have made of it is computed with the pipeline's own operators, the way the end-to-end
//! test does (`tests/it/e2e.rs`): a row at exactly the record's current version (tombstoned when
//! deleted), or a dead letter under the rule it breaks. Then:
//! - lost: a record with neither its row nor its dead letter;
//! - stale: a row at another version, or tombstoned when live (or the reverse);
//! - phantom: a row of no record (HubSpot's merged-away ids may stay only as tombstones);
//! - duplicate: the same record twice in a table, or the same pair twice in `matches`;
//! - bad dead letter: an entry that names no rule, or whose payload does not break its rule;
//! - vectors: one per live accepted row with a non-empty text, of its current text (content
//!   hash); none for tombstones or unknown records. A record whose newest version breaks a rule
//!   keeps its last valid row and that row's vector (the newer version is in the DLQ);
//! - matches: both ends live rows with vectors.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use crate::config::{Config, CANDIDATE_FIELDS, JOB_ORDER_FIELDS};
use crate::error::{Error, Result};
use crate::model::{ChangeEvent, Lineage, Op};
use crate::operators::{self, Canonical};
use crate::stages::embed::text::{content_hash, Templates};

/// `(entity, crm, crm_id)`, entity `candidate` or `position`.
pub type Key = (&'static str, String, String);

/// What the pipeline must make of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// A row at `version`; `hash`: the content hash of its embedding text (None: tombstone or
    /// empty text, so no vector).
    Row {
        version: i64,
        deleted: bool,
        hash: Option<String>,
    },
    /// A dead letter under `rule`, and no row at this version.
    Rejected { rule: String, version: i64 },
}

/// Every record of the CRM simulators with its expected outcome.
pub type Truth = HashMap<Key, Expected>;

fn entity_of(crm_entity: &str) -> &'static str {
    // Bullhorn `Candidate`, HubSpot `contact`, Salesforce `Contact`.
    if crm_entity.eq_ignore_ascii_case("candidate") || crm_entity.eq_ignore_ascii_case("contact") {
        "candidate"
    } else {
        "position"
    }
}

/// The outcome of one change event, as normalize and embed would decide it.
pub fn expected_of(cfg: &Config, templates: &Templates, ev: &ChangeEvent) -> Expected {
    let lineage = Lineage {
        crm: ev.crm.clone(),
        crm_id: ev.record_id.clone(),
        source_version: ev.source_version,
        event_id: ev.event_id.clone(),
        raw_topic: String::new(),
        raw_partition: 0,
        raw_offset: 0,
        trace_id: None,
    };
    match operators::normalize(ev, lineage, &cfg.normalize) {
        Err(r) => Expected::Rejected {
            rule: r.rule.to_owned(),
            version: ev.source_version,
        },
        Ok(Canonical::Candidate(c)) => {
            let text = (!c.deleted).then(|| templates.candidate.render_candidate(&c));
            Expected::Row {
                version: c.source_version,
                deleted: c.deleted,
                hash: text
                    .filter(|t| !t.is_empty())
                    .map(|t| content_hash(&cfg.ml.model, &t)),
            }
        }
        Ok(Canonical::Position(p)) => {
            let text = (!p.deleted).then(|| templates.position.render_position(&p));
            Expected::Row {
                version: p.source_version,
                deleted: p.deleted,
                hash: text
                    .filter(|t| !t.is_empty())
                    .map(|t| content_hash(&cfg.ml.model, &t)),
            }
        }
    }
}

/// Every Bullhorn record as the REST API serves it with the ingest's fields list.
fn bullhorn_served(
    sim: &crmflow_bullhorn::sim::SimHandle,
    entity: &str,
    fields: &str,
) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let body = sim
            .search(entity, "id:[0 TO *]", Some(fields), Some("id"), start, 500)
            .map_err(|e| Error::Other(format!("bullhorn simulator: {e}")))?;
        let page: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Error::Other(e.to_string()))?;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        let n = data.len();
        out.extend(data);
        start += n;
        if n == 0 || start as u64 >= page["total"].as_u64().unwrap_or(0) {
            return Ok(out);
        }
    }
}

/// Adds the Bullhorn simulator's records to `truth`.
pub fn bullhorn_truth(
    cfg: &Config,
    templates: &Templates,
    sim: &crmflow_bullhorn::sim::SimHandle,
    truth: &mut Truth,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    for (entity, fields) in [
        ("Candidate", CANDIDATE_FIELDS),
        ("JobOrder", JOB_ORDER_FIELDS),
    ] {
        for rec in bullhorn_served(sim, entity, fields)? {
            let Some(id) = rec["id"].as_i64() else {
                continue;
            };
            let id = id.to_string();
            let version = rec["dateLastModified"].as_i64().unwrap_or_default();
            let op = if rec["isDeleted"].as_bool().unwrap_or(false) {
                Op::Delete
            } else {
                Op::Upsert
            };
            let ev = ChangeEvent::new(
                "bullhorn",
                entity,
                &id,
                op,
                version,
                now,
                vec![],
                "poll",
                rec.to_string(),
            );
            truth.insert(
                (entity_of(entity), "bullhorn".into(), id),
                expected_of(cfg, templates, &ev),
            );
        }
    }
    Ok(())
}

/// Adds the HubSpot simulator's contacts and jobs (archived ones included) to `truth`.
pub fn hubspot_truth(
    cfg: &Config,
    templates: &Templates,
    sim: &crmflow_hubspot::sim::SimHandle,
    truth: &mut Truth,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    for (object, entity) in [("contacts", "contact"), ("jobs", "job")] {
        let records = sim
            .records(object)
            .map_err(|e| Error::Other(format!("hubspot simulator: {e}")))?;
        let prop = crmflow_hubspot::wire::modified_property(object);
        for obj in &records {
            let Some(ev) = crate::sources::hubspot::record::object_event(
                entity,
                obj,
                prop,
                "poll",
                vec![],
                now,
            ) else {
                continue;
            };
            truth.insert(
                (entity_of(entity), "hubspot".into(), obj.id.clone()),
                expected_of(cfg, templates, &ev),
            );
        }
    }
    Ok(())
}

/// The record as the Salesforce source reads it: only the fields it selects for `object`
/// ([`crate::sources::salesforce::fields_of`]), so a rule on a field it does not read is not
/// expected to reject it.
fn salesforce_served(cfg: &Config, object: &str, record: &serde_json::Value) -> serde_json::Value {
    let fields = crate::sources::salesforce::fields_of(&cfg.salesforce, object);
    let mut out = serde_json::Map::new();
    if let Some(m) = record.as_object() {
        for f in &fields {
            if let Some(v) = m.get(f) {
                out.insert(f.clone(), v.clone());
            }
        }
    }
    serde_json::Value::Object(out)
}

/// Adds the Salesforce simulator's records of every object the source reads (recycle bin and
/// merged-away records included) to `truth`: version `SystemModstamp`, a tombstone iff `IsDeleted`.
pub fn salesforce_truth(
    cfg: &Config,
    templates: &Templates,
    sim: &crmflow_salesforce::sim::SimHandle,
    truth: &mut Truth,
) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    for object in &cfg.salesforce.objects {
        let records = sim
            .records(object)
            .map_err(|e| Error::Other(format!("salesforce simulator: {e}")))?;
        for rec in &records {
            let Some(id) = rec["Id"].as_str() else {
                continue;
            };
            let version = rec["SystemModstamp"]
                .as_str()
                .and_then(crmflow_salesforce::wire::parse_datetime)
                .map(|t| t.timestamp_millis())
                .ok_or_else(|| {
                    Error::Other(format!("salesforce {object} {id}: no SystemModstamp"))
                })?;
            let op = if rec["IsDeleted"].as_bool().unwrap_or(false) {
                Op::Delete
            } else {
                Op::Upsert
            };
            let ev = ChangeEvent::new(
                "salesforce",
                object,
                id,
                op,
                version,
                now,
                vec![],
                "poll",
                salesforce_served(cfg, object, rec).to_string(),
            );
            truth.insert(
                (entity_of(object), "salesforce".into(), id.to_owned()),
                expected_of(cfg, templates, &ev),
            );
        }
    }
    Ok(())
}

/// One dead letter, reduced to what the verdict needs.
#[derive(Debug, Clone)]
struct DeadLetter {
    stage: String,
    rule: Option<String>,
    /// `(entity, crm, id)` and the event, when the payload is a raw change event.
    event: Option<ChangeEvent>,
    /// `<crm>:<id>` of a canonical key (sink and embed dead letters).
    canonical_key: Option<String>,
    source_topic: String,
}

fn read_dead_letters(cfg: &Config) -> Result<Vec<DeadLetter>> {
    use crate::dlq::{H_RULE, H_SOURCE_TOPIC, H_STAGE};
    let mut out = Vec::new();
    crate::dlq::scan(cfg, &Default::default(), |e| {
        let stage = e.header(H_STAGE).unwrap_or("-").to_owned();
        let source_topic = e.header(H_SOURCE_TOPIC).unwrap_or_default().to_owned();
        let event = if source_topic.contains(".raw.") {
            e.payload
                .as_deref()
                .and_then(|p| crate::codec::change_event().decode(p).ok())
        } else {
            None
        };
        let key = String::from_utf8_lossy(e.key.as_deref().unwrap_or_default()).into_owned();
        out.push(DeadLetter {
            stage,
            rule: e.header(H_RULE).map(str::to_owned),
            event,
            canonical_key: key.contains(':').then_some(key),
            source_topic,
        });
        true
    })?;
    Ok(out)
}

/// What the soak found wrong; empty lists mean the pipeline converged on the truth.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verdict {
    pub records: usize,
    pub rows: usize,
    pub vectors: usize,
    pub matches: usize,
    pub dead_letters: usize,
    pub rejected_records: usize,
    pub lost: Vec<String>,
    pub stale: Vec<String>,
    pub phantom: Vec<String>,
    pub duplicate: Vec<String>,
    pub bad_dead_letters: Vec<String>,
    pub missing_vectors: Vec<String>,
    pub stale_vectors: Vec<String>,
    pub extra_vectors: Vec<String>,
    pub bad_matches: Vec<String>,
}

impl Verdict {
    fn lists(&self) -> [(&'static str, &Vec<String>); 9] {
        [
            ("lost", &self.lost),
            ("stale", &self.stale),
            ("phantom", &self.phantom),
            ("duplicate", &self.duplicate),
            ("bad dead letters", &self.bad_dead_letters),
            ("missing vectors", &self.missing_vectors),
            ("stale vectors", &self.stale_vectors),
            ("extra vectors", &self.extra_vectors),
            ("bad matches", &self.bad_matches),
        ]
    }

    /// Number of violations of every kind.
    pub fn violations(&self) -> usize {
        self.lists().iter().map(|(_, l)| l.len()).sum()
    }

    /// One line of counts.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} records, {} rows, {} vectors, {} matches, {} dead letters",
            self.records, self.rows, self.vectors, self.matches, self.dead_letters
        );
        for (name, l) in self.lists() {
            if !l.is_empty() {
                let _ = write!(s, "; {name} {}", l.len());
            }
        }
        s
    }

    /// Every kind with up to `n` examples.
    pub fn details(&self, n: usize) -> String {
        let mut s = String::new();
        for (name, l) in self.lists() {
            let _ = writeln!(s, "  {name:<18}{}", l.len());
            for e in l.iter().take(n) {
                let _ = writeln!(s, "      {e}");
            }
        }
        s
    }
}

fn key_str(k: &Key) -> String {
    format!("{} {}:{}", k.0, k.1, k.2)
}

/// Compares Postgres and the dead-letter topic of `cfg`'s namespace with `truth`.
pub async fn check(cfg: &Config, truth: &Truth) -> Result<Verdict> {
    let templates = Templates::from_config(&cfg.embed).map_err(Error::Other)?;
    let dead = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || read_dead_letters(&cfg))
            .await
            .map_err(|e| Error::Other(e.to_string()))??
    };
    let client = crate::store::connect(cfg).await?;
    let mut v = Verdict {
        records: truth.len(),
        dead_letters: dead.len(),
        ..Default::default()
    };

    // Dead letters: each must name a rule its payload breaks.
    let mut rejected: HashSet<(Key, String, i64)> = HashSet::new();
    let mut not_embedded: HashSet<Key> = HashSet::new();
    for d in &dead {
        let Some(rule) = &d.rule else {
            v.bad_dead_letters.push(format!(
                "{} dead letter without a rule (from {})",
                d.stage, d.source_topic
            ));
            continue;
        };
        if d.stage == "embed" && rule == "embed.empty_text" {
            if let Some((crm, id)) = d.canonical_key.as_deref().and_then(|k| k.split_once(':')) {
                let entity = if d.source_topic.ends_with("candidate") {
                    "candidate"
                } else {
                    "position"
                };
                not_embedded.insert((entity, crm.to_owned(), id.to_owned()));
            }
            continue;
        }
        let Some(ev) = &d.event else {
            v.bad_dead_letters.push(format!(
                "{} dead letter under {rule} that is not a raw change event (from {})",
                d.stage, d.source_topic
            ));
            continue;
        };
        let key: Key = (entity_of(&ev.entity), ev.crm.clone(), ev.record_id.clone());
        match expected_of(cfg, &templates, ev) {
            Expected::Rejected { rule: r, version } if &r == rule => {
                rejected.insert((key, r, version));
            }
            other => v.bad_dead_letters.push(format!(
                "{}: dead-lettered by {} under {rule}, but the event gives {other:?}",
                key_str(&key),
                d.stage
            )),
        }
    }

    // Rows.
    let mut rows: HashMap<Key, (i64, bool)> = HashMap::new();
    for (table, entity) in [("candidates", "candidate"), ("positions", "position")] {
        let sql = format!(
            "SELECT crm, crm_id, source_version, deleted_at IS NOT NULL FROM {table} ORDER BY crm, crm_id"
        );
        for r in client.query(&sql, &[]).await? {
            let key: Key = (entity, r.get(0), r.get(1));
            if rows.insert(key.clone(), (r.get(2), r.get(3))).is_some() {
                v.duplicate.push(format!("{} has two rows", key_str(&key)));
            }
        }
    }
    v.rows = rows.len();
    for (key, exp) in truth {
        match exp {
            Expected::Row {
                version, deleted, ..
            } => match rows.get(key) {
                None => v
                    .lost
                    .push(format!("{}: no row (v{version})", key_str(key))),
                Some(&(rv, rdel)) if rv != *version || rdel != *deleted => v.stale.push(format!(
                    "{}: row v{rv}{} but the CRM has v{version}{}",
                    key_str(key),
                    if rdel { " deleted" } else { "" },
                    if *deleted { " deleted" } else { "" }
                )),
                Some(_) => {}
            },
            Expected::Rejected { rule, version } => {
                v.rejected_records += 1;
                if !rejected.contains(&(key.clone(), rule.clone(), *version)) {
                    v.lost.push(format!(
                        "{}: v{version} breaks {rule} but is not in the DLQ",
                        key_str(key)
                    ));
                }
                if let Some(&(rv, _)) = rows.get(key) {
                    if rv >= *version {
                        v.stale.push(format!(
                            "{}: row v{rv} although v{version} was rejected ({rule})",
                            key_str(key)
                        ));
                    }
                }
            }
        }
    }
    for (key, &(rv, rdel)) in &rows {
        // HubSpot's merged-away ids exist nowhere any more; their tombstones may stay.
        let merged_away = key.1 == "hubspot" && rdel;
        if !truth.contains_key(key) && !merged_away {
            v.phantom.push(format!(
                "{}: row v{rv}{} of no record",
                key_str(key),
                if rdel { " deleted" } else { "" }
            ));
        }
    }

    // Vectors.
    let mut vectors: HashMap<Key, String> = HashMap::new();
    for r in client
        .query(
            "SELECT entity, crm, crm_id, content_hash FROM embeddings WHERE model = $1",
            &[&cfg.ml.model],
        )
        .await?
    {
        let entity = entity_of(&r.get::<_, String>(0));
        vectors.insert((entity, r.get(1), r.get(2)), r.get(3));
    }
    v.vectors = vectors.len();
    let row_live = |key: &Key| rows.get(key).is_some_and(|r| !r.1);
    let mut extra: HashSet<Key> = HashSet::new();
    for key in vectors.keys() {
        if !row_live(key) {
            extra.insert(key.clone());
            v.extra_vectors
                .push(format!("{}: vector without a live row", key_str(key)));
        }
    }
    // Live rows with a vector: the only records a match may name.
    let mut live_with_vector: HashSet<Key> =
        vectors.keys().filter(|k| row_live(k)).cloned().collect();
    for (key, exp) in truth {
        let want = match exp {
            Expected::Row {
                hash: Some(h),
                deleted: false,
                ..
            } if !not_embedded.contains(key) => Some(h),
            // The CRM's newest version breaks a rule: the last valid row stays, with its vector
            // (whether that row may stay is judged with the rows above).
            Expected::Rejected { .. } => continue,
            _ => None,
        };
        match (want, vectors.get(key)) {
            (Some(h), Some(got)) if h != got => v
                .stale_vectors
                .push(format!("{}: vector of an older text", key_str(key))),
            (Some(_), None) => v
                .missing_vectors
                .push(format!("{}: live, no vector", key_str(key))),
            (None, Some(_)) if !not_embedded.contains(key) && !extra.contains(key) => {
                live_with_vector.remove(key);
                v.extra_vectors.push(format!(
                    "{}: vector of a deleted record or of an empty text",
                    key_str(key)
                ))
            }
            _ => {}
        }
    }
    for key in vectors.keys() {
        if !truth.contains_key(key) && !extra.contains(key) {
            v.extra_vectors
                .push(format!("{}: vector of no record", key_str(key)));
        }
    }

    // Matches.
    let mut pairs: HashSet<(Key, Key)> = HashSet::new();
    for r in client
        .query(
            "SELECT from_entity, from_crm, from_id, to_entity, to_crm, to_id FROM matches WHERE model = $1",
            &[&cfg.ml.model],
        )
        .await?
    {
        v.matches += 1;
        let from: Key = (entity_of(&r.get::<_, String>(0)), r.get(1), r.get(2));
        let to: Key = (entity_of(&r.get::<_, String>(3)), r.get(4), r.get(5));
        for end in [&from, &to] {
            if !live_with_vector.contains(end) {
                v.bad_matches.push(format!(
                    "{} -> {}: {} is not a live record with a vector",
                    key_str(&from),
                    key_str(&to),
                    key_str(end)
                ));
            }
        }
        if !pairs.insert((from.clone(), to.clone())) {
            v.duplicate.push(format!(
                "match {} -> {} twice",
                key_str(&from),
                key_str(&to)
            ));
        }
    }
    v.lost.sort();
    v.stale.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(email: &str, deleted: bool) -> ChangeEvent {
        let rec = serde_json::json!({
            "id": 7, "firstName": "Ada", "lastName": "Lovelace", "email": email,
            "occupation": "Rust engineer", "status": "Active",
            "dateAdded": 1_700_000_000_000i64, "dateLastModified": 1_700_000_000_500i64,
            "isDeleted": deleted,
        });
        let op = if deleted { Op::Delete } else { Op::Upsert };
        ChangeEvent::new(
            "bullhorn",
            "Candidate",
            "7",
            op,
            1_700_000_000_500,
            1_700_000_001_000,
            vec![],
            "poll",
            rec.to_string(),
        )
    }

    #[test]
    fn expected_outcomes_follow_the_operators_and_the_embed_template() {
        let cfg = Config::default();
        let t = Templates::from_config(&cfg.embed).unwrap();
        match expected_of(&cfg, &t, &candidate("ada@example.com", false)) {
            Expected::Row {
                version,
                deleted: false,
                hash: Some(h),
            } => {
                assert_eq!(version, 1_700_000_000_500);
                assert_eq!(h.len(), 64, "sha-256 hex");
            }
            other => panic!("{other:?}"),
        }
        match expected_of(&cfg, &t, &candidate("not-an-email", false)) {
            Expected::Rejected { rule, version } => {
                assert!(rule.contains("email"), "{rule}");
                assert_eq!(version, 1_700_000_000_500);
            }
            other => panic!("{other:?}"),
        }
        // A tombstone has no text, so no vector.
        assert!(matches!(
            expected_of(&cfg, &t, &candidate("ada@example.com", true)),
            Expected::Row {
                deleted: true,
                hash: None,
                ..
            }
        ));
    }

    #[test]
    fn a_verdict_counts_every_kind_of_violation() {
        let v = Verdict {
            lost: vec!["a".into()],
            bad_matches: vec!["b".into(), "c".into()],
            ..Default::default()
        };
        assert_eq!(v.violations(), 3);
        assert!(v.line().contains("lost 1"), "{}", v.line());
        assert!(v.details(1).contains("bad matches"), "{}", v.details(1));
        assert_eq!(Verdict::default().violations(), 0);
    }
}
