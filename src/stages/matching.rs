//! The match step (`crmflow run --stages match`): keeps every record's top-k list of the other
//! side (candidate -> positions, position -> candidates) in `matches`, by cosine similarity over
//! the model's HNSW indexes.
//!
//! It is a separate stage fed by `match_queue` (migration V2), not a step inside the embed
//! transaction: a top-k search costs about as much as a vector write, so doing 500 of them inside
//! each embed commit would halve the embed stage's throughput, while a queue lets matching trail
//! by a moment and catch up. The embed stage (and the backfill) enqueue a record in the same
//! transaction as its new vector; a delete enqueues the records that listed the deleted one.
//!
//! Per transaction: take up to `match_batch_size` queue rows of the configured model
//! (`FOR UPDATE SKIP LOCKED`, so instances share the queue), read their vectors, run one k-NN
//! query per record against the other side's partial HNSW index, replace each record's list
//! (rank 1..k, score = 1 - cosine distance), delete the queue rows, commit. A record without a
//! vector (deleted meanwhile) just loses its list.
//!
//! Reverse direction: a position written after a candidate must appear in that candidate's list
//! too. When a record dequeued with `cascade` changed, the records of the other side that are in
//! its new top-k, and those whose lists currently contain it, are queued for a recompute
//! (without cascade, so refreshes never ripple further). That is exact for every record that has
//! the changed one in its top-k and is itself among the changed one's k nearest or listed it
//! before; a record for which the new one would rank but which is not among its k nearest (k-NN
//! is not symmetric) learns of it at its own next change or the next backfill. One exception is
//! made exact because it is the common case of an initial load: a record whose list came out
//! shorter than k (the other side had fewer than k vectors) waits in `match_hungry`, and every
//! change on the other side queues it again until its list is full.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;
use pgvector::Vector;
use tokio_postgres::types::ToSql;

use super::embed::store::{self as estore, literal};
use super::embed::text::Entity;
use crate::error::Result;
use crate::runtime::{RunCtx, StageName};

/// One k-NN hit: (crm, crm_id, score).
type Found = (String, String, f32);

/// One queued record.
struct Queued {
    entity: Entity,
    crm: String,
    crm_id: String,
    cascade: bool,
    /// The change's traceparent, stored by the embed stage: a sampled one gets a match span.
    trace: Option<crate::kafka::trace::TraceParent>,
}

/// Runs the match step until shutdown (or, in one-shot mode, until the queue is empty and the
/// embed stage of this run has finished).
pub async fn run(ctx: RunCtx) -> Result<()> {
    let cfg = ctx.cfg.clone();
    let model = cfg.ml.model.clone();
    let k = cfg.embed.top_k.max(1) as i64;
    let limit = cfg.embed.match_batch_size.max(1) as i64;
    let pool = crate::store::pool(&cfg)?;
    let index = estore::IndexParams::from_config(&cfg);
    estore::ensure_indexes(&mut pool.get().await?, &model, &index).await?;
    let mut total = 0u64;
    let mut attempt = 0;
    tracing::info!(model, top_k = k, "match step started");
    loop {
        if ctx.shutdown.is_cancelled() {
            return Ok(());
        }
        // Read before the batch: if upstream was already done, an empty queue now is final.
        let upstream_done = ctx.finished.upstream_done(StageName::Match);
        let started = std::time::Instant::now();
        match process(&pool, &model, &index, k, limit).await {
            Ok(0) => {
                attempt = 0;
                crate::observe::progress("match");
                if ctx.until_caught_up && upstream_done {
                    tracing::info!(records = total, "match step caught up");
                    return Ok(());
                }
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            Ok(n) => {
                crate::telemetry::outage::postgres().ok();
                attempt = 0;
                total += n as u64;
                crate::observe::records_in("match", n as u64);
                crate::observe::batch("match", n, started.elapsed());
                crate::observe::records_out("match", n as u64);
            }
            Err(error) if error.is_retriable() => {
                let wait = crate::runtime::backoff(attempt, Duration::from_secs(30));
                crate::telemetry::outage::retrying("match", "match step", &error, attempt);
                crate::observe::retry("match", "postgres", &error);
                tokio::select! {
                    _ = ctx.shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// One transaction: up to `limit` queued records of `model`. Returns how many were handled.
pub async fn process(
    pool: &Pool,
    model: &str,
    index: &estore::IndexParams,
    k: i64,
    limit: i64,
) -> Result<usize> {
    let dim = index.dim;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let queued: Vec<Queued> = tx
        .query(
            "SELECT entity, crm, crm_id, cascade, traceparent FROM match_queue WHERE model = $1
             ORDER BY enqueued_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            &[&model, &limit],
        )
        .await?
        .iter()
        .filter_map(|r| {
            Some(Queued {
                entity: Entity::parse(r.get(0))?,
                crm: r.get(1),
                crm_id: r.get(2),
                cascade: r.get(3),
                trace: r
                    .get::<_, Option<&str>>(4)
                    .and_then(crate::kafka::trace::TraceParent::parse),
            })
        })
        .collect();
    if queued.is_empty() {
        return Ok(0);
    }
    // One database span for the transaction, linked to the sampled records; each sampled
    // record gets a `match` span in its own trace, under its embed span.
    let db_span = crate::kafka::trace::db_span("SELECT+INSERT", "matches", queued.len());
    crate::kafka::trace::link_sampled(&db_span, queued.iter().filter_map(|q| q.trace.as_ref()));
    let _record_spans: Vec<tracing::Span> = queued
        .iter()
        .filter_map(|q| {
            crate::kafka::trace::record_span(q.trace.as_ref(), || {
                tracing::info_span!(
                    "record",
                    otel.name = "match",
                    otel.kind = "internal",
                    crmflow.stage = "match",
                    crmflow.entity = q.entity.as_str(),
                    crmflow.crm = q.crm.as_str(),
                    crmflow.record_id = q.crm_id.as_str(),
                    crmflow.match.model = model,
                    crmflow.match.top_k = k,
                    db.system.name = "postgresql",
                )
            })
        })
        .collect();
    if let Some(ef) = index.ef_search_for(k) {
        // HNSW returns at most ef_search rows per scan.
        tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef}"))
            .await?;
    }
    let cast = format!("embedding::vector({dim})");
    // The indexed expression (vector or halfvec) and the query vector cast to it.
    let (col, param) = (index.column_expr(), index.param_expr("$1"));
    // Vectors of the queued records.
    let (mut es, mut cs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for q in &queued {
        es.push(q.entity.as_str());
        cs.push(q.crm.as_str());
        ids.push(q.crm_id.as_str());
    }
    let vectors: HashMap<(String, String, String), Vector> = tx
        .query(
            &format!(
                "SELECT e.entity, e.crm, e.crm_id, e.{cast} FROM unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
                 JOIN embeddings e ON e.entity = k.entity AND e.crm = k.crm AND e.crm_id = k.crm_id AND e.model = $1
                 ORDER BY 1, 2, 3 FOR SHARE OF e"
            ),
            &[&model, &es, &cs, &ids],
        )
        .await?
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect();

    // The k-NN statements, one per target side; literals so the planner picks the partial index.
    let mut knn = HashMap::new();
    for target in [Entity::Candidate, Entity::Position] {
        let sql = format!(
            "SELECT crm, crm_id, (1 - ({col} <=> {param}))::real AS score FROM embeddings
             WHERE model = {m} AND entity = {e}
             ORDER BY {col} <=> {param} LIMIT {k}",
            m = literal(model),
            e = literal(target.as_str()),
        );
        knn.insert(target, tx.prepare(&sql).await?);
    }

    // New lists, and the reverse refreshes they cause.
    let mut lists: Vec<(&Queued, Vec<Found>)> = Vec::with_capacity(queued.len());
    for q in &queued {
        let Some(v) = vectors.get(&(
            q.entity.as_str().to_owned(),
            q.crm.clone(),
            q.crm_id.clone(),
        )) else {
            continue;
        };
        let rows = tx.query(&knn[&q.entity.other()], &[v]).await?;
        lists.push((
            q,
            rows.iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect(),
        ));
    }
    // Lock the targets (and, above, the sources) against a concurrent delete or change: a
    // delete waits for this commit and then sees these rows when it clears the lists that point
    // at the deleted record; a target deleted before is not returned here and is left out.
    let mut targets: Vec<(Entity, &str, &str)> = lists
        .iter()
        .flat_map(|(q, l)| {
            l.iter()
                .map(move |(c, i, _)| (q.entity.other(), c.as_str(), i.as_str()))
        })
        .collect();
    targets.sort();
    targets.dedup();
    let te: Vec<&str> = targets.iter().map(|t| t.0.as_str()).collect();
    let tc: Vec<&str> = targets.iter().map(|t| t.1).collect();
    let ti: Vec<&str> = targets.iter().map(|t| t.2).collect();
    let alive: std::collections::HashSet<(String, String, String)> = tx
        .query(
            "SELECT e.entity, e.crm, e.crm_id FROM unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
             JOIN embeddings e ON e.entity = k.entity AND e.crm = k.crm AND e.crm_id = k.crm_id AND e.model = $1
             ORDER BY 1, 2, 3 FOR SHARE OF e",
            &[&model, &te, &tc, &ti],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut ins: [Vec<String>; 6] = Default::default();
    let mut ins_rank: Vec<i32> = Vec::new();
    let mut ins_score: Vec<f32> = Vec::new();
    let mut refresh: Vec<(Entity, String, String)> = Vec::new();
    for (q, list) in &lists {
        let other = q.entity.other();
        let mut rank = 0;
        for (to_crm, to_id, score) in list {
            if !alive.contains(&(other.as_str().to_owned(), to_crm.clone(), to_id.clone())) {
                continue;
            }
            rank += 1;
            if q.cascade {
                refresh.push((other, to_crm.clone(), to_id.clone()));
            }
            ins[0].push(q.entity.as_str().to_owned());
            ins[1].push(q.crm.clone());
            ins[2].push(q.crm_id.clone());
            ins[3].push(other.as_str().to_owned());
            ins[4].push(to_crm.clone());
            ins[5].push(to_id.clone());
            ins_rank.push(rank);
            ins_score.push(*score);
        }
    }
    let key_params: [&(dyn ToSql + Sync); 4] = [&model, &es, &cs, &ids];
    // Records that listed a changed one: their score for it is stale, recompute them too.
    let cascading: Vec<usize> = (0..queued.len()).filter(|&i| queued[i].cascade).collect();
    if !cascading.is_empty() {
        let ce: Vec<&str> = cascading.iter().map(|&i| es[i]).collect();
        let cc: Vec<&str> = cascading.iter().map(|&i| cs[i]).collect();
        let ci: Vec<&str> = cascading.iter().map(|&i| ids[i]).collect();
        for r in tx
            .query(
                "SELECT DISTINCT m.from_entity, m.from_crm, m.from_id
                 FROM unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
                 JOIN matches m ON m.model = $1 AND m.to_entity = k.entity AND m.to_crm = k.crm AND m.to_id = k.crm_id",
                &[&model, &ce, &cc, &ci],
            )
            .await?
        {
            if let Some(e) = Entity::parse(r.get(0)) {
                refresh.push((e, r.get(1), r.get(2)));
            }
        }
    }
    tx.execute(
        "DELETE FROM matches m USING unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
         WHERE m.model = $1 AND m.from_entity = k.entity AND m.from_crm = k.crm AND m.from_id = k.crm_id",
        &key_params,
    )
    .await?;
    // Short lists wait in match_hungry for the other side to grow; full (or vanished) ones leave.
    tx.execute(
        "DELETE FROM match_hungry h USING unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
         WHERE h.model = $1 AND h.entity = k.entity AND h.crm = k.crm AND h.crm_id = k.crm_id",
        &key_params,
    )
    .await?;
    let short: Vec<&Queued> = lists
        .iter()
        .filter(|(q, l)| {
            (l.len() as i64) < k
                && vectors.contains_key(&(
                    q.entity.as_str().to_owned(),
                    q.crm.clone(),
                    q.crm_id.clone(),
                ))
        })
        .map(|(q, _)| *q)
        .collect();
    if !short.is_empty() {
        let se: Vec<&str> = short.iter().map(|q| q.entity.as_str()).collect();
        let sc: Vec<&str> = short.iter().map(|q| q.crm.as_str()).collect();
        let si: Vec<&str> = short.iter().map(|q| q.crm_id.as_str()).collect();
        tx.execute(
            "INSERT INTO match_hungry (model, entity, crm, crm_id)
             SELECT $1, entity, crm, crm_id FROM unnest($2::text[], $3::text[], $4::text[]) AS u(entity, crm, crm_id)
             ON CONFLICT DO NOTHING",
            &[&model, &se, &sc, &si],
        )
        .await?;
    }
    // A changed record of one side may belong in every short list of the other side.
    let mut grew: Vec<&str> = queued
        .iter()
        .filter(|q| q.cascade)
        .map(|q| q.entity.other().as_str())
        .collect();
    grew.sort();
    grew.dedup();
    if !grew.is_empty() {
        tx.execute(
            "INSERT INTO match_queue (model, entity, crm, crm_id, cascade)
             SELECT h.model, h.entity, h.crm, h.crm_id, false FROM match_hungry h
             WHERE h.model = $1 AND h.entity = ANY($2)
             ON CONFLICT (model, entity, crm, crm_id) DO NOTHING",
            &[&model, &grew],
        )
        .await?;
    }
    if !ins_rank.is_empty() {
        tx.execute(
            "INSERT INTO matches (model, from_entity, from_crm, from_id, rank, to_entity, to_crm, to_id, score, updated_at)
             SELECT $1, fe, fc, fi, r, te, tc, ti, s, now()
             FROM unnest($2::text[], $3::text[], $4::text[], $5::int4[], $6::text[], $7::text[], $8::text[], $9::real[])
                  AS u(fe, fc, fi, r, te, tc, ti, s)",
            &[&model, &ins[0], &ins[1], &ins[2], &ins_rank, &ins[3], &ins[4], &ins[5], &ins_score],
        )
        .await?;
    }
    tx.execute(
        "DELETE FROM match_queue q USING unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
         WHERE q.model = $1 AND q.entity = k.entity AND q.crm = k.crm AND q.crm_id = k.crm_id",
        &key_params,
    )
    .await?;
    if !refresh.is_empty() {
        refresh.sort();
        refresh.dedup();
        let re: Vec<&str> = refresh.iter().map(|r| r.0.as_str()).collect();
        let rc: Vec<&str> = refresh.iter().map(|r| r.1.as_str()).collect();
        let ri: Vec<&str> = refresh.iter().map(|r| r.2.as_str()).collect();
        tx.execute(
            "INSERT INTO match_queue (model, entity, crm, crm_id, cascade)
             SELECT $1, entity, crm, crm_id, false FROM unnest($2::text[], $3::text[], $4::text[]) AS u(entity, crm, crm_id)
             ON CONFLICT (model, entity, crm, crm_id) DO NOTHING",
            &[&model, &re, &rc, &ri],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(queued.len())
}
