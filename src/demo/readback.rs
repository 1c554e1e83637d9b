//! Reading the demo's summary back from where the pipeline put things, not from the stages'
//! in-process counters: rows, vectors and matches from Postgres; rejected records from the
//! dead-letter topic (tallied by stage and rule, and by the record they name, so a record that
//! has no row or no vector is accounted for).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use super::{
    EntityCounts, HubspotTruth, MatchedCandidate, PositionMatches, RuleCount, SourceTruth, Summary,
};
use crate::config::Config;
use crate::error::{Error, Result};

/// Which entity a dead letter belongs to, from its source topic (`...candidate`,
/// `...joborder`, `...position`, HubSpot's `...contact`, `...job`, `...deal`, Salesforce's
/// `...contact`, `...position__c`).
pub(super) fn entity_of_topic(topic: &str) -> Option<&'static str> {
    // Raw topic names are lower case (`crm.raw.salesforce.position__c`).
    let last = topic.rsplit('.').next()?.to_ascii_lowercase();
    match last.as_str() {
        "candidate" | "contact" => Some("candidate"),
        "joborder" | "position" | "job" | "deal" | "position__c" => Some("position"),
        _ => None,
    }
}

/// The CRM of a dead letter: the raw topic names it (`crm.raw.<crm>.<entity>`); a canonical
/// key carries it (`<crm>:<id>`).
pub(super) fn record_key(topic: &str, key: &str) -> String {
    if key.contains(':') {
        return key.to_owned();
    }
    let mut parts = topic.rsplit('.');
    let _entity = parts.next();
    let crm = parts.next().unwrap_or("bullhorn");
    format!("{crm}:{key}")
}

/// Tallies of the dead-letter topic.
#[derive(Debug, Default)]
struct DeadLetterTally {
    total: u64,
    by_rule: BTreeMap<(String, String), (u64, String)>,
    /// (entity, record id) rejected before Postgres (normalize, sink).
    no_row: HashSet<(&'static str, String)>,
    /// (entity, record id) rejected by embed.
    no_vector: HashSet<(&'static str, String)>,
}

fn tally_dead_letters(cfg: &Config, since_ms: i64) -> Result<DeadLetterTally> {
    use crate::dlq::{H_CLASS, H_REASON, H_RULE, H_SOURCE_TOPIC, H_STAGE};
    let filter = crate::dlq::Filter {
        since_ms: Some(since_ms),
        ..Default::default()
    };
    let mut t = DeadLetterTally::default();
    crate::dlq::scan(cfg, &filter, |e| {
        t.total += 1;
        let stage = e.header(H_STAGE).unwrap_or("-").to_owned();
        let rule = e
            .header(H_RULE)
            .or(e.header(H_CLASS))
            .unwrap_or("-")
            .to_owned();
        let entry = t
            .by_rule
            .entry((stage.clone(), rule))
            .or_insert_with(|| (0, e.header(H_REASON).unwrap_or("").to_owned()));
        entry.0 += 1;
        let key = String::from_utf8_lossy(e.key.as_deref().unwrap_or_default()).into_owned();
        // Raw keys are the CRM id, canonical keys `<crm>:<id>`: one record, one `<crm>:<id>`.
        let id = record_key(e.header(H_SOURCE_TOPIC).unwrap_or_default(), &key);
        if let Some(entity) = e.header(H_SOURCE_TOPIC).and_then(entity_of_topic) {
            match stage.as_str() {
                "embed" => {
                    t.no_vector.insert((entity, id));
                }
                _ => {
                    t.no_row.insert((entity, id));
                }
            }
        }
        true
    })?;
    Ok(t)
}

/// Reads the summary back from Postgres and the dead-letter topic.
pub async fn read_summary(
    cfg: &Config,
    source: SourceTruth,
    hubspot: Option<HubspotTruth>,
    elapsed: Duration,
    caught_up: bool,
    dlq_since_ms: i64,
) -> Result<Summary> {
    let dlq = {
        let cfg = cfg.clone();
        tokio::task::spawn_blocking(move || tally_dead_letters(&cfg, dlq_since_ms))
            .await
            .map_err(|e| Error::Other(e.to_string()))??
    };
    let client = crate::store::connect(cfg).await?;
    let model = cfg.ml.model.clone();
    let entity = |table: &str, name: &'static str| {
        let client = &client;
        let model = model.clone();
        let sql = format!(
            "SELECT count(*), count(*) FILTER (WHERE deleted_at IS NULL),
                    (SELECT count(*) FROM embeddings WHERE model = $1 AND entity = $2)
             FROM {table}"
        );
        let dead_lettered = dlq.no_row.iter().filter(|(e, _)| *e == name).count() as i64;
        let not_embedded = dlq.no_vector.iter().filter(|(e, _)| *e == name).count() as i64;
        let by_crm = format!("SELECT crm, count(*) FROM {table} GROUP BY crm");
        async move {
            let r = client.query_one(&sql, &[&model, &name]).await?;
            let (rows, live, vectors): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
            let rows_by_crm = client
                .query(&by_crm, &[])
                .await?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect();
            Ok::<_, Error>(EntityCounts {
                rows,
                live,
                tombstoned: rows - live,
                vectors,
                dead_lettered,
                not_embedded,
                rows_by_crm,
            })
        }
    };
    let candidates = entity("candidates", "candidate").await?;
    let positions = entity("positions", "position").await?;
    let matches: i64 = client
        .query_one("SELECT count(*) FROM matches WHERE model = $1", &[&model])
        .await?
        .get(0);
    let rows = client
        .query(
            "WITH p AS (
                 SELECT p.crm, p.crm_id, coalesce(p.title, '(untitled)') AS title,
                        -- A Rust engineering job first (semantic vectors should bring Rust and
                        -- systems people), then jobs of other fields, so a reader can judge.
                        CASE WHEN p.title ILIKE '%engineer%' AND 'Rust' = ANY(p.skills) THEN 0
                             WHEN p.title ILIKE '%nurse%' THEN 1
                             WHEN p.title ILIKE '%account%' OR p.title ILIKE '%financ%' THEN 2
                             ELSE 3 END AS kind,
                        coalesce(p.is_open, false) AS open
                 FROM positions p
                 WHERE p.deleted_at IS NULL
                   AND EXISTS (SELECT 1 FROM matches m WHERE m.model = $1 AND m.from_entity = 'position'
                               AND m.from_crm = p.crm AND m.from_id = p.crm_id)
                 ORDER BY kind, open DESC, length(p.crm_id), p.crm_id
                 LIMIT 3)
             SELECT p.crm_id, p.title, m.rank, m.to_id,
                    trim(coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '')), m.score,
                    c.occupation, coalesce(c.skills[1:4], '{}')
             FROM p
             JOIN matches m ON m.model = $1 AND m.from_entity = 'position' AND m.from_crm = p.crm
                           AND m.from_id = p.crm_id AND m.rank <= 3
             LEFT JOIN candidates c ON c.crm = m.to_crm AND c.crm_id = m.to_id
             ORDER BY p.kind, p.open DESC, length(p.crm_id), p.crm_id, m.rank",
            &[&model],
        )
        .await?;
    let mut top_matches: Vec<PositionMatches> = Vec::new();
    for r in rows {
        let position_id: String = r.get(0);
        if top_matches.last().map(|p| &p.position_id) != Some(&position_id) {
            top_matches.push(PositionMatches {
                position_id: position_id.clone(),
                title: r.get(1),
                candidates: Vec::new(),
            });
        }
        let name: String = r.get(4);
        if let Some(p) = top_matches.last_mut() {
            p.candidates.push(MatchedCandidate {
                rank: r.get(2),
                candidate_id: r.get(3),
                name: if name.is_empty() {
                    "(no name)".into()
                } else {
                    name
                },
                score: r.get(5),
                occupation: r.get(6),
                skills: r.get(7),
            });
        }
    }
    let mut by_rule: Vec<RuleCount> = dlq
        .by_rule
        .into_iter()
        .map(|((stage, rule), (count, example))| RuleCount {
            stage,
            rule,
            count,
            example,
        })
        .collect();
    by_rule.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
    let secs = elapsed.as_secs_f64().max(1e-3);
    let mut summary = Summary {
        topic_prefix: cfg.kafka.topic_prefix.clone(),
        schema: cfg.postgres.schema.clone(),
        model,
        elapsed_seconds: (secs * 10.0).round() / 10.0,
        caught_up,
        source,
        hubspot,
        salesforce: None,
        records_per_second: ((candidates.rows + positions.rows) as f64 / secs).round(),
        candidates,
        positions,
        matches,
        dead_letters: dlq.total,
        dead_letters_by_rule: by_rule,
        complete: false,
        top_matches,
    };
    summary.complete = summary.is_complete();
    Ok(summary)
}
