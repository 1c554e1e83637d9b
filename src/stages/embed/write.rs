//! The write side of the embed stage: one writer's transaction (vectors, deletes cascading to
//! matches, the match queue, and its partitions' offsets, all or nothing), the retry around it,
//! and what the in-memory cache learns once it committed.

use super::*;

/// After a commit: keys of this batch leave `pending`; the cache learns what was confirmed and
/// forgets what was not (guard refused, ML rejected).
pub(super) fn settle(
    embedded: &Embedded,
    written: &HashSet<Key>,
    removed: &HashSet<Key>,
    cache: &moka::sync::Cache<Key, State>,
    pending: &mut HashMap<Key, (u64, State)>,
) {
    let p = &embedded.prepared;
    let mut done = |key: &Key, confirmed: Option<State>| {
        if pending.get(key).is_some_and(|(s, _)| *s == p.seq) {
            pending.remove(key);
        }
        match confirmed {
            Some(state) => cache.insert(key.clone(), state),
            None => cache.invalidate(key),
        }
    };
    for (key, state, _) in &p.skipped {
        done(key, Some(state.clone()));
    }
    for ((rec, hash), v) in p.embed.iter().zip(&embedded.vectors) {
        let ok = v.is_ok() && written.contains(&rec.key);
        done(
            &rec.key,
            ok.then(|| State {
                version: rec.version,
                hash: Some(hash.clone()),
            }),
        );
    }
    for rec in &p.deletes {
        let ok = removed.contains(&rec.key);
        done(
            &rec.key,
            ok.then_some(State {
                version: rec.version,
                hash: None,
            }),
        );
    }
}

/// Writes one batch: dead letters first (acked), then one transaction with the vectors, the
/// deletes, the match queue and the offsets. Retriable Postgres errors are retried here.
pub(super) async fn commit(w: &Writer, epoch: i64, embedded: &Embedded) -> Result<Outcome> {
    let p = &embedded.prepared;
    let mut dead = Vec::new();
    for (input, class, rule, reason) in &p.dead {
        dead.push(
            dlq::send(
                &w.producer,
                &w.dlq_topic,
                &dead_letter(input, class, rule, reason),
            )
            .await?,
        );
    }
    let mut rejected = 0u64;
    let reasons: Vec<(usize, String, &'static str)> = embedded
        .vectors
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().err().map(|e| (i, e.to_string(), e.class())))
        .collect();
    for (i, reason, class) in &reasons {
        let input = &p.embed[*i].0.input;
        dead.push(
            dlq::send(
                &w.producer,
                &w.dlq_topic,
                &dead_letter(input, class, "ml.input_rejected", reason),
            )
            .await?,
        );
        rejected += 1;
    }
    for d in dead {
        d.await?;
    }
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        match write_once(w, epoch, embedded).await {
            Ok(outcome) => {
                outage::postgres().ok();
                if let Outcome::Written { written, removed } = &outcome {
                    report(embedded, written, removed, &reasons, started.elapsed());
                    let s = &w.stats;
                    s.embedded.fetch_add(written.len() as u64, Relaxed);
                    s.deleted.fetch_add(removed.len() as u64, Relaxed);
                    s.skipped.fetch_add(p.skipped.len() as u64, Relaxed);
                    s.rejected
                        .fetch_add(rejected + p.dead.len() as u64, Relaxed);
                    s.batches.fetch_add(1, Relaxed);
                    tracing::debug!(
                        seq = p.seq,
                        messages = p.messages,
                        written = written.len(),
                        skipped = p.skipped.len(),
                        deleted = removed.len(),
                        "embed batch committed"
                    );
                }
                return Ok(outcome);
            }
            Err(error) if error.is_retriable() && !w.shutdown.is_cancelled() => {
                let wait = crate::runtime::backoff(attempt, Duration::from_secs(30));
                outage::retrying("embed", "embed write", &error, attempt);
                observe::retry("embed", "postgres", &error);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Metrics of one committed batch.
pub(super) fn report(
    embedded: &Embedded,
    written: &HashSet<Key>,
    removed: &HashSet<Key>,
    ml_rejected: &[(usize, String, &'static str)],
    took: Duration,
) {
    let p = &embedded.prepared;
    observe::records_in("embed", p.messages as u64);
    observe::batch("embed", p.messages, took);
    observe::embeddings_skipped(p.skipped.len() as u64);
    for (_, _, rule, _) in &p.dead {
        observe::rejected("embed", rule, 1);
    }
    if !ml_rejected.is_empty() {
        observe::rejected("embed", "ml.input_rejected", ml_rejected.len() as u64);
    }
    for entity in [Entity::Candidate, Entity::Position] {
        let versions: Vec<i64> = p
            .embed
            .iter()
            .filter(|(rec, _)| rec.key.entity == entity && written.contains(&rec.key))
            .map(|(rec, _)| rec.version)
            .collect();
        observe::freshness("embed", entity.as_str(), &versions);
    }
    observe::records_out("embed", (written.len() + removed.len()) as u64);
}

pub(super) async fn write_once(w: &Writer, epoch: i64, embedded: &Embedded) -> Result<Outcome> {
    let p = &embedded.prepared;
    let batch_span = trace::batch_span("embed", "process", "canonical", p.messages);
    trace::record_offsets(
        &batch_span,
        p.embed
            .iter()
            .map(|(r, _)| &r.input)
            .chain(p.deletes.iter().map(|r| &r.input))
            .map(|i| (i.partition, i.offset)),
    );
    trace::link_sampled(
        &batch_span,
        p.embed
            .iter()
            .map(|(r, _)| r)
            .chain(&p.deletes)
            .filter(|r| r.span.is_some())
            .filter_map(|r| r.input.trace.as_ref()),
    );
    let db_span = trace::db_span("COPY+UPSERT", "embeddings", p.embed.len() + p.deletes.len());
    if let Some(tp) = trace::TraceParent::of_span(&batch_span) {
        tp.set_as_parent_of(&db_span);
    }
    let (_batch_span, _db_span) = (batch_span, db_span);
    let mut client = w.pool.get().await?;
    let tx = client.transaction().await?;
    if offsets::epoch_for_share(&tx, &w.group).await? != epoch {
        return Ok(Outcome::Replayed(offsets::epoch(&tx, &w.group).await?));
    }
    let rows: Vec<VectorRow<'_>> = p
        .embed
        .iter()
        .zip(&embedded.vectors)
        .filter_map(|((rec, hash), v)| {
            v.as_ref().ok().map(|v| VectorRow {
                key: &rec.key,
                hash,
                version: rec.version,
                vector: v.clone(),
                traceparent: rec.traceparent(),
            })
        })
        .collect();
    let written = store::write_vectors(&tx, &w.vector_type, &w.model, rows).await?;
    // Unchanged texts (skipped, or embedded again to the same hash) still move the stored
    // vector's version forward: an older delete arriving later must not remove it.
    let unchanged: Vec<(&Key, i64, &str)> = p
        .skipped
        .iter()
        .filter_map(|(key, state, _)| Some((key, state.version, state.hash.as_deref()?)))
        .chain(
            p.embed
                .iter()
                .map(|(rec, hash)| (&rec.key, rec.version, &**hash)),
        )
        .collect();
    store::advance_versions(&tx, &w.model, &unchanged).await?;
    let deletes: Vec<(&Key, i64)> = p.deletes.iter().map(|r| (&r.key, r.version)).collect();
    let removed = store::delete_records(&tx, &deletes).await?;
    offsets::store(&tx, &w.group, &p.next).await?;
    tx.commit().await?;
    Ok(Outcome::Written { written, removed })
}

pub(super) fn dead_letter<'a>(
    input: &'a Input,
    class: &'a str,
    rule: &'a str,
    reason: &'a str,
) -> DeadLetter<'a> {
    DeadLetter {
        stage: "embed",
        class,
        rule: Some(rule),
        reason,
        source_topic: &input.topic,
        source_partition: input.partition,
        source_offset: input.offset,
        key: input.key.as_deref(),
        payload: Some(&input.payload),
        trace: input.trace,
        replay_count: input.replay_count,
    }
}
