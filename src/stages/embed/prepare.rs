//! The read side of a batch: for each record, skip (unchanged text), embed or delete, decided
//! against the batch's pending states, then the cache, then Postgres.

use super::*;

/// Decides per record: skip, embed or delete, against pending > cache > Postgres; registers the
/// batch's expected states in `pending`.
pub(super) async fn prepare(
    batch: Gather,
    seq: u64,
    cache: &moka::sync::Cache<Key, State>,
    pending: &mut HashMap<Key, (u64, State)>,
    pool: &Pool,
    model: &str,
) -> Result<Prepared> {
    let mut known: HashMap<Key, State> = HashMap::with_capacity(batch.recs.len());
    let mut unknown: Vec<&Key> = Vec::new();
    for key in batch.recs.keys() {
        if let Some((_, s)) = pending.get(key) {
            known.insert(key.clone(), s.clone());
        } else if let Some(s) = cache.get(key) {
            known.insert(key.clone(), s);
        } else {
            unknown.push(key);
        }
    }
    if !unknown.is_empty() {
        let loaded = load_with_retry(pool, model, &unknown).await?;
        for k in unknown {
            known.insert(k.clone(), loaded.get(k).cloned().unwrap_or(State::ABSENT));
        }
    }
    let mut p = Prepared {
        seq,
        embed: Vec::new(),
        texts: Vec::new(),
        deletes: Vec::new(),
        dead: Vec::new(),
        skipped: Vec::new(),
        next: batch.next,
        messages: batch.messages,
        by_partition: batch.by_partition,
    };
    for (input, reason) in batch.undecodable {
        p.dead.push((input, "decode", "canonical.decode", reason));
    }
    for (key, mut rec) in batch.recs {
        let expected = &known[&key];
        rec.span = trace::record_span(rec.input.trace.as_ref(), || {
            tracing::info_span!(
                "record",
                otel.name = "embed",
                otel.kind = "consumer",
                crmflow.stage = "embed",
                messaging.system = "kafka",
                messaging.operation.type = "process",
                messaging.destination.name = rec.input.topic.as_str(),
                messaging.destination.partition.id = rec.input.partition,
                messaging.kafka.offset = rec.input.offset,
                crmflow.embed.outcome = tracing::field::Empty,
                crmflow.embed.content_hash = tracing::field::Empty,
                crmflow.embed.model = model,
            )
        });
        let outcome = |rec: &Rec, what: &'static str| {
            if let Some(span) = &rec.span {
                span.record("crmflow.embed.outcome", what);
                if let Action::Embed { hash, .. } = &rec.action {
                    span.record("crmflow.embed.content_hash", &**hash);
                }
            }
        };
        if rec.version < expected.version {
            outcome(&rec, "skipped: older than stored");
            // Older than what is (or will be) stored: the version guard would refuse it anyway.
            let partition = rec.input.partition;
            p.skipped.push((key, expected.clone(), partition));
            continue;
        }
        match &rec.action {
            Action::Delete => {
                outcome(&rec, "delete");
                pending.insert(
                    key,
                    (
                        seq,
                        State {
                            version: rec.version,
                            hash: None,
                        },
                    ),
                );
                p.deletes.push(rec);
            }
            Action::Embed { text, .. } if text.is_empty() => {
                outcome(&rec, "rejected: embed.empty_text");
                let reason = "the record's template renders an empty text".to_owned();
                p.dead
                    .push((rec.input, "embed", "embed.empty_text", reason));
            }
            Action::Embed { hash, .. } if expected.hash.as_ref() == Some(hash) => {
                outcome(&rec, "skipped: content hash unchanged, no ML call");
                let state = State {
                    version: rec.version,
                    hash: Some(hash.clone()),
                };
                pending.insert(key.clone(), (seq, state.clone()));
                p.skipped.push((key, state, rec.input.partition));
            }
            Action::Embed { hash, .. } => {
                outcome(&rec, "embedded");
                let hash = hash.clone();
                pending.insert(
                    key,
                    (
                        seq,
                        State {
                            version: rec.version,
                            hash: Some(hash.clone()),
                        },
                    ),
                );
                let mut rec = rec;
                if let Action::Embed { text, .. } = &mut rec.action {
                    p.texts.push(std::mem::take(text));
                }
                p.embed.push((rec, hash));
            }
        }
    }
    Ok(p)
}

pub(super) async fn load_with_retry(
    pool: &Pool,
    model: &str,
    keys: &[&Key],
) -> Result<HashMap<Key, State>> {
    let mut attempt = 0;
    loop {
        let res = async {
            let c = pool.get().await?;
            store::load_states(&c, model, keys.iter().copied()).await
        }
        .await;
        match res {
            Ok(m) => {
                outage::postgres().ok();
                return Ok(m);
            }
            Err(error) if error.is_retriable() => {
                let wait = crate::runtime::backoff(attempt, Duration::from_secs(30));
                outage::retrying("embed", "loading stored hashes", &error, attempt);
                observe::retry("embed", "postgres", &error);
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}
