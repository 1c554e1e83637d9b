//! `crmflow embed backfill`: embed every live record in Postgres for the configured model, for
//! example after a new model name was configured. The old model's vectors stay (they are keyed
//! by model) and keep serving until the switch.
//!
//! Pages of `batch_size` live rows are read in key order (`(crm, crm_id)` keyset pagination),
//! rendered with the same templates as the stage, and skipped when the stored hash for the model
//! is current. Up to `max_in_flight` pages are at the ML service at once; their writes commit in
//! page order, each with the cursor (`source_cursors`, source `embed-backfill:<model>`) in the
//! same transaction, so an interrupted backfill resumes after the last committed page. A
//! finished backfill removes its cursor, so the next run starts over (and skips what is current).
//! Rows written go through the same version guard as the stage's and are queued for matching.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::store::{self, Key, VectorRow};
use super::text::{content_hash, Entity, Template, Templates};
use crate::config::Config;
use crate::error::{Error, Result};

/// The summary printed as JSON, as the old service's generator reported it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackfillReport {
    /// Vectors written.
    pub updated: u64,
    /// Records whose vector for this model was already current.
    pub skipped: u64,
    /// Records the ML service refused, or whose text is empty.
    pub failed: u64,
    pub duration_seconds: f64,
}

/// One page of rows to embed.
struct Page {
    number: u64,
    /// Last key of the page: the cursor once it is committed.
    last: (String, String),
    rows: Vec<(Key, i64, String, String)>,
    skipped: u64,
    failed: u64,
}

fn source(model: &str) -> String {
    format!("embed-backfill:{model}")
}

/// Runs the backfill to the end.
pub async fn run(cfg: &Config) -> Result<BackfillReport> {
    run_with(cfg, CancellationToken::new()).await
}

/// Runs the backfill until done or `stop` is cancelled (the cursor keeps what was committed).
pub async fn run_with(cfg: &Config, stop: CancellationToken) -> Result<BackfillReport> {
    let started = Instant::now();
    crate::store::migrate(cfg).await?;
    let templates = Templates::from_config(&cfg.embed).map_err(Error::Other)?;
    let model = cfg.ml.model.clone();
    let client = super::ml_client(cfg)?;
    let pool = crate::store::pool(cfg)?;
    let vector_type = {
        let mut c = pool.get().await?;
        store::ensure_indexes(&mut c, &model, &store::IndexParams::from_config(cfg)).await?;
        store::vector_type(&c).await.map_err(store::no_pgvector)?
    };
    let mut report = BackfillReport::default();
    let page_size = cfg.embed.batch_size.max(1) as i64;

    // Totals first, for the progress bar.
    let mut total = 0u64;
    {
        let c = pool.get().await?;
        for e in [Entity::Candidate, Entity::Position] {
            let n: i64 = c
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {} WHERE deleted_at IS NULL",
                        e.table()
                    ),
                    &[],
                )
                .await?
                .get(0);
            total += n as u64;
            // A large backfill (a new model) loads without the index and builds it at the end.
            let stored = super::bulk::stored(&c, &model, e).await?;
            if super::bulk::should_bulk(n as u64, stored, cfg.embed.bulk_threshold) {
                super::bulk::enter(&pool, &model, e, super::bulk::Reason::Backfill, n as u64)
                    .await?;
            }
        }
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} embed backfill [{bar:40}] {pos}/{len} records ({per_sec}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        b
    });
    tracing::info!(model, total, "embed backfill started");
    let mut last_log = Instant::now();
    let mut done_records = 0u64;
    let mut batches = 0u64;

    for entity in [Entity::Candidate, Entity::Position] {
        let template = templates.get(entity).clone();
        let cursor = load_cursor(&pool, &model, entity).await?;
        if let Some((crm, id)) = &cursor {
            tracing::info!(
                entity = entity.as_str(),
                crm,
                crm_id = id,
                "resuming after the stored cursor"
            );
        }
        // Pages are read one after the other (each starts after the previous one's last key),
        // embedded concurrently, and committed in order.
        let pages = futures::stream::unfold((cursor, 0u64, false), |(after, number, finished)| {
            let pool = pool.clone();
            let template = template.clone();
            let model = model.clone();
            async move {
                if finished {
                    return None;
                }
                let page = read_page(
                    &pool,
                    &template,
                    &model,
                    after.as_ref(),
                    page_size,
                    number + 1,
                )
                .await;
                match page {
                    Ok(None) => None,
                    Ok(Some(p)) => {
                        let next = Some(p.last.clone());
                        Some((Ok(p), (next, number + 1, false)))
                    }
                    Err(e) => Some((Err(e), (after, number, true))),
                }
            }
        });
        let mut embedded = std::pin::pin!(pages
            .map(|page| {
                let client = client.clone();
                let stop = stop.clone();
                AbortOnDropHandle::new(tokio::spawn(async move {
                    let page = page?;
                    let texts: Vec<String> = page.rows.iter().map(|r| r.3.clone()).collect();
                    let vectors = if texts.is_empty() {
                        Vec::new()
                    } else {
                        super::embed_until_done(&client, &texts, &stop).await?
                    };
                    Ok::<_, Error>((page, vectors))
                }))
            })
            .buffered(cfg.embed.max_in_flight.max(1)));
        while let Some(joined) = tokio::select! {
            _ = stop.cancelled() => None,
            n = embedded.next() => n,
        } {
            let (page, vectors) =
                joined.map_err(|e| Error::Other(format!("backfill task: {e}")))??;
            let page_started = Instant::now();
            let mut failed = page.failed;
            let mut rows = Vec::with_capacity(page.rows.len());
            for ((key, version, hash, _), v) in page.rows.iter().zip(vectors) {
                match v {
                    Ok(vector) => rows.push(VectorRow {
                        key,
                        hash,
                        version: *version,
                        vector,
                        traceparent: None,
                    }),
                    Err(error) => {
                        tracing::warn!(entity = key.entity.as_str(), crm = key.crm, crm_id = key.crm_id, %error,
                            class = error.class(), "ml service refused the record; not embedded");
                        failed += 1;
                    }
                }
            }
            let attempted = rows.len() as u64;
            let written =
                commit_page(&pool, &vector_type, &model, rows, entity, &page.last).await?;
            report.updated += written;
            report.skipped += page.skipped + (attempted - written);
            report.failed += failed;
            let records = page.rows.len() as u64 + page.skipped + page.failed;
            done_records += records;
            batches += 1;
            if let Some(b) = &bar {
                b.inc(records);
            } else if last_log.elapsed() >= Duration::from_secs(5) {
                last_log = Instant::now();
                tracing::info!(
                    batch = batches,
                    entity = entity.as_str(),
                    page = page.number,
                    records = done_records,
                    total,
                    updated = report.updated,
                    skipped = report.skipped,
                    failed = report.failed,
                    batch_ms = page_started.elapsed().as_millis() as u64,
                    elapsed_s = started.elapsed().as_secs(),
                    "embed backfill progress"
                );
            }
        }
        if stop.is_cancelled() {
            break;
        }
        clear_cursor(&pool, &model, entity).await?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !stop.is_cancelled() {
        // Builds the index of a side loaded in bulk (by this run or an interrupted one).
        super::bulk::finish(&pool, cfg, &model).await?;
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    tracing::info!(?report, batches, "embed backfill finished");
    Ok(report)
}

async fn load_cursor(
    pool: &deadpool_postgres::Pool,
    model: &str,
    entity: Entity,
) -> Result<Option<(String, String)>> {
    let c = pool.get().await?;
    let row = c
        .query_opt(
            "SELECT cursor FROM source_cursors WHERE source = $1 AND entity = $2",
            &[&source(model), &entity.as_str()],
        )
        .await?;
    Ok(row.and_then(|r| {
        let v: serde_json::Value = r.get(0);
        Some((
            v.get("crm")?.as_str()?.to_owned(),
            v.get("crm_id")?.as_str()?.to_owned(),
        ))
    }))
}

async fn clear_cursor(pool: &deadpool_postgres::Pool, model: &str, entity: Entity) -> Result<()> {
    pool.get()
        .await?
        .execute(
            "DELETE FROM source_cursors WHERE source = $1 AND entity = $2",
            &[&source(model), &entity.as_str()],
        )
        .await?;
    Ok(())
}

/// Reads the next page after `after`; decides which rows need embedding.
async fn read_page(
    pool: &deadpool_postgres::Pool,
    template: &Template,
    model: &str,
    after: Option<&(String, String)>,
    limit: i64,
    number: u64,
) -> Result<Option<Page>> {
    let entity = template.entity();
    let cols = template.sql_columns();
    let select = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("({c})::text AS f{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (crm, id) = after.cloned().unwrap_or_default();
    let c = pool.get().await?;
    // The row-value comparison uses the primary key; `after = None` starts before every key.
    let rows = c
        .query(
            &format!(
                "SELECT crm, crm_id, source_version, {select} FROM {table}
                 WHERE deleted_at IS NULL AND ($1 OR (crm, crm_id) > ($2, $3))
                 ORDER BY crm, crm_id LIMIT $4",
                table = entity.table()
            ),
            &[&after.is_none(), &crm, &id, &limit],
        )
        .await?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let last = (last.get::<_, String>(0), last.get::<_, String>(1));
    let mut candidates = Vec::with_capacity(rows.len());
    let mut failed = 0;
    for r in &rows {
        let values: Vec<Option<Cow<'_, str>>> = (0..cols.len())
            .map(|i| r.get::<_, Option<&str>>(3 + i).map(Cow::Borrowed))
            .collect();
        let text = template.render_values(&values);
        let key = Key {
            entity,
            crm: r.get(0),
            crm_id: r.get(1),
        };
        if text.is_empty() {
            tracing::warn!(
                entity = entity.as_str(),
                crm = key.crm,
                crm_id = key.crm_id,
                "empty text; not embedded"
            );
            failed += 1;
            continue;
        }
        let hash = content_hash(model, &text);
        candidates.push((key, r.get::<_, i64>(2), hash, text));
    }
    let stored = store::load_states(&c, model, candidates.iter().map(|r| &r.0)).await?;
    let before = candidates.len() as u64;
    candidates.retain(|(key, _, hash, _)| {
        stored
            .get(key)
            .and_then(|s| s.hash.as_deref())
            .is_none_or(|h| h != hash.as_str())
    });
    Ok(Some(Page {
        number,
        last,
        skipped: before - candidates.len() as u64,
        rows: candidates,
        failed,
    }))
}

/// Writes a page's vectors and moves the cursor, in one transaction (retried when transient).
async fn commit_page(
    pool: &deadpool_postgres::Pool,
    vector_type: &tokio_postgres::types::Type,
    model: &str,
    rows: Vec<VectorRow<'_>>,
    entity: Entity,
    last: &(String, String),
) -> Result<u64> {
    let cursor = serde_json::json!({"crm": last.0, "crm_id": last.1});
    let mut attempt = 0;
    loop {
        let rows = rows
            .iter()
            .map(|r| VectorRow {
                key: r.key,
                hash: r.hash,
                version: r.version,
                vector: r.vector.clone(),
                traceparent: None,
            })
            .collect();
        let res = async {
            let mut c = pool.get().await?;
            let tx = c.transaction().await?;
            let written = store::write_vectors(&tx, vector_type, model, rows).await?;
            tx.execute(
                "INSERT INTO source_cursors (source, entity, cursor, updated_at) VALUES ($1, $2, $3, now())
                 ON CONFLICT (source, entity) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()",
                &[&source(model), &entity.as_str(), &cursor],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, Error>(written.len() as u64)
        }
        .await;
        match res {
            Ok(n) => return Ok(n),
            Err(error) if error.is_retriable() => {
                let wait = crate::runtime::backoff(attempt, Duration::from_secs(30));
                tracing::warn!(%error, attempt, "backfill write failed, retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
