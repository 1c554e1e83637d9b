//! The embed stage's Postgres side: the per-model HNSW indexes, the stored state of records
//! (hash and version per model), and the writes of one batch: vectors by binary COPY into a
//! session-local staging table plus one guarded upsert, deletes that cascade to matches, and the
//! match queue. Every write here runs inside the caller's transaction, next to the offsets.
//!
//! The upsert only replaces a vector when the incoming source version is not older AND the
//! content hash differs, and it returns the keys it actually wrote: the stage's hash cache
//! trusts those and forgets the rest, so a write refused by the version guard can never leave
//! the cache believing in a vector that is not there.

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use pgvector::Vector;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::text::Entity;
use crate::config::{Config, VectorStorage};
use crate::error::{Error, Result};

/// One record, independent of the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub entity: Entity,
    pub crm: String,
    pub crm_id: String,
}

/// What Postgres holds (or will hold, once in-flight batches commit) for a key and model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Source version of the stored vector (or of the skip/delete that decided it);
    /// `i64::MIN` when unknown (no row).
    pub version: i64,
    /// Content hash of the stored vector; `None` = no vector.
    pub hash: Option<Arc<str>>,
}

impl State {
    pub const ABSENT: State = State {
        version: i64::MIN,
        hash: None,
    };
}

/// Quotes a string as an SQL literal (for the partial-index predicates, which must be literals
/// for the planner to match a query against the index).
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// How the HNSW indexes of a model are built and searched (from `ml.dim` and `embed.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexParams {
    pub dim: usize,
    pub storage: VectorStorage,
    pub m: u32,
    pub ef_construction: u32,
    /// `hnsw.ef_search` of the k-NN queries; 0 = pgvector's default (40) or 2k when k > 40.
    pub ef_search: u32,
}

impl IndexParams {
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            dim: cfg.ml.dim,
            storage: cfg.embed.storage,
            m: cfg.embed.hnsw_m.clamp(2, 100),
            ef_construction: cfg.embed.hnsw_ef_construction.clamp(4, 1000),
            ef_search: cfg.embed.hnsw_ef_search.min(1000),
        }
    }

    /// The indexed expression; a k-NN query must order by exactly this to use the index.
    pub fn column_expr(&self) -> String {
        match self.storage {
            VectorStorage::Vector => format!("embedding::vector({})", self.dim),
            VectorStorage::Halfvec => format!("embedding::halfvec({})", self.dim),
        }
    }

    /// A `vector` query parameter (`$1`) cast to the indexed type.
    pub fn param_expr(&self, param: &str) -> String {
        match self.storage {
            VectorStorage::Vector => format!("{param}::vector({})", self.dim),
            VectorStorage::Halfvec => format!("({param}::vector({d}))::halfvec({d})", d = self.dim),
        }
    }

    fn opclass(&self) -> &'static str {
        match self.storage {
            VectorStorage::Vector => "vector_cosine_ops",
            VectorStorage::Halfvec => "halfvec_cosine_ops",
        }
    }

    /// The `hnsw.ef_search` to set for a top-`k` query, if not pgvector's default: an HNSW
    /// scan returns at most ef_search rows.
    pub fn ef_search_for(&self, k: i64) -> Option<u32> {
        match self.ef_search {
            0 if k > 40 => Some((2 * k).min(1000) as u32),
            0 => None,
            n => Some(n.max(k.min(1000) as u32)),
        }
    }

    /// `CREATE INDEX IF NOT EXISTS` of the (model, entity) partial index.
    pub fn create_sql(&self, model: &str, entity: Entity) -> String {
        format!(
            "CREATE INDEX IF NOT EXISTS {name} ON embeddings USING hnsw (({col}) {ops}) \
             WITH (m = {m}, ef_construction = {efc}) WHERE model = {ml} AND entity = {el}",
            name = index_name(model, entity, self.storage),
            col = self.column_expr(),
            ops = self.opclass(),
            m = self.m,
            efc = self.ef_construction,
            ml = literal(model),
            el = literal(entity.as_str()),
        )
    }
}

/// Name of the HNSW index of (model, entity) in `storage`: stable, short, and safe whatever the
/// model name (the `vector` one keeps the name it always had).
pub fn index_name(model: &str, entity: Entity, storage: VectorStorage) -> String {
    let h = match storage {
        VectorStorage::Vector => super::text::content_hash("hnsw-index", model),
        VectorStorage::Halfvec => super::text::content_hash("hnsw-index-halfvec", model),
    };
    format!("embeddings_hnsw_{}_{}", &h[..12], entity.as_str())
}

/// Creates the HNSW cosine index of each side for `model` if missing, except for a side being
/// bulk-loaded ([`super::bulk`]: its index is built when the load ends); drops the index of the
/// other storage kind. One partial index per (model, entity) rather than per model: a top-k
/// search for positions must not walk a graph that is 90 % candidates and come back with fewer
/// than k positions after filtering.
pub async fn ensure_indexes(
    client: &mut deadpool_postgres::Object,
    model: &str,
    params: &IndexParams,
) -> Result<()> {
    // Stages starting together (embed and match) would race on the catalog; serialise them.
    let tx = client.transaction().await?;
    tx.execute(super::bulk::CATALOG_LOCK, &[]).await?;
    let bulk = super::bulk::active(&tx, model).await?;
    for entity in [Entity::Candidate, Entity::Position] {
        let other = match params.storage {
            VectorStorage::Vector => VectorStorage::Halfvec,
            VectorStorage::Halfvec => VectorStorage::Vector,
        };
        tx.batch_execute(&format!(
            "DROP INDEX IF EXISTS {}",
            index_name(model, entity, other)
        ))
        .await?;
        if !bulk.contains(&entity) {
            tx.batch_execute(&params.create_sql(model, entity)).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// The `vector` type of this database (an extension type: its OID differs per database).
pub async fn vector_type(client: &impl GenericClient) -> Result<Type> {
    let stmt = client.prepare("SELECT $1::vector").await?;
    Ok(stmt.params()[0].clone())
}

/// Stored states of `keys` for `model` (absent keys are missing from the map).
pub async fn load_states<'a>(
    client: &impl GenericClient,
    model: &str,
    keys: impl Iterator<Item = &'a Key>,
) -> Result<HashMap<Key, State>> {
    let (mut es, mut cs, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for k in keys {
        es.push(k.entity.as_str());
        cs.push(k.crm.as_str());
        ids.push(k.crm_id.as_str());
    }
    if es.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = client
        .query(
            "SELECT e.entity, e.crm, e.crm_id, e.source_version, e.content_hash
             FROM unnest($2::text[], $3::text[], $4::text[]) AS k(entity, crm, crm_id)
             JOIN embeddings e ON e.entity = k.entity AND e.crm = k.crm AND e.crm_id = k.crm_id AND e.model = $1",
            &[&model, &es, &cs, &ids],
        )
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let Some(entity) = Entity::parse(r.get(0)) else {
            continue;
        };
        out.insert(
            Key {
                entity,
                crm: r.get(1),
                crm_id: r.get(2),
            },
            State {
                version: r.get(3),
                hash: Some(Arc::from(r.get::<_, &str>(4))),
            },
        );
    }
    Ok(out)
}

/// One vector to store.
pub struct VectorRow<'a> {
    pub key: &'a Key,
    pub hash: &'a str,
    pub version: i64,
    pub vector: Vec<f32>,
    /// The change's W3C traceparent (lineage's trace id; the match span's parent).
    pub traceparent: Option<String>,
}

/// COPYs `rows` (unique keys) and upserts them with the version/hash guard; enqueues the written
/// ones for matching (with the reverse refresh). Returns the keys actually written.
pub async fn write_vectors(
    tx: &deadpool_postgres::Transaction<'_>,
    vector_type: &Type,
    model: &str,
    rows: Vec<VectorRow<'_>>,
) -> Result<HashSet<Key>> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    tx.batch_execute(
        "CREATE TEMP TABLE IF NOT EXISTS crmflow_stage_embeddings (
             entity text, crm text, crm_id text, content_hash text, source_version bigint, embedding vector,
             traceparent text
         ) ON COMMIT DELETE ROWS",
    )
    .await?;
    let sink = tx
        .copy_in(
            "COPY crmflow_stage_embeddings (entity, crm, crm_id, content_hash, source_version, embedding, traceparent) FROM STDIN BINARY",
        )
        .await?;
    let types = [
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        vector_type.clone(),
        Type::TEXT,
    ];
    let mut writer = pin!(BinaryCopyInWriter::new(sink, &types));
    for r in rows {
        let v = Vector::from(r.vector);
        let values: [&(dyn ToSql + Sync); 7] = [
            &r.key.entity.as_str(),
            &r.key.crm,
            &r.key.crm_id,
            &r.hash,
            &r.version,
            &v,
            &r.traceparent,
        ];
        writer.as_mut().write(&values).await?;
    }
    writer.finish().await?;
    let written = tx
        .query(
            "WITH w AS (
                 INSERT INTO embeddings AS t (entity, crm, crm_id, model, content_hash, embedding, source_version, updated_at, traceparent)
                 SELECT entity, crm, crm_id, $1, content_hash, embedding, source_version, now(), traceparent FROM crmflow_stage_embeddings
                 ON CONFLICT (entity, crm, crm_id, model) DO UPDATE
                 SET content_hash = EXCLUDED.content_hash, embedding = EXCLUDED.embedding,
                     source_version = EXCLUDED.source_version, updated_at = now(),
                     traceparent = COALESCE(EXCLUDED.traceparent, t.traceparent)
                 WHERE t.source_version <= EXCLUDED.source_version AND t.content_hash <> EXCLUDED.content_hash
                 RETURNING t.entity, t.crm, t.crm_id, t.traceparent
             ), q AS (
                 INSERT INTO match_queue (model, entity, crm, crm_id, cascade, traceparent)
                 SELECT $1, entity, crm, crm_id, true, traceparent FROM w
                 ON CONFLICT (model, entity, crm, crm_id) DO UPDATE
                 SET cascade = true, traceparent = EXCLUDED.traceparent
             )
             SELECT entity, crm, crm_id FROM w",
            &[&model],
        )
        .await?;
    Ok(keys_of(&written))
}

fn keys_of(rows: &[tokio_postgres::Row]) -> HashSet<Key> {
    rows.iter()
        .filter_map(|r| {
            Some(Key {
                entity: Entity::parse(r.get(0))?,
                crm: r.get(1),
                crm_id: r.get(2),
            })
        })
        .collect()
}

/// Moves the stored version of vectors whose text is unchanged (same content hash) forward to
/// the record's newer version, so the delete guard of [`delete_records`] compares against the
/// record's latest version, not the version whose text was last embedded.
pub async fn advance_versions(
    tx: &impl GenericClient,
    model: &str,
    unchanged: &[(&Key, i64, &str)],
) -> Result<()> {
    if unchanged.is_empty() {
        return Ok(());
    }
    let (mut es, mut cs, mut ids, mut vs, mut hs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, v, h) in unchanged {
        es.push(k.entity.as_str());
        cs.push(k.crm.as_str());
        ids.push(k.crm_id.as_str());
        vs.push(*v);
        hs.push(*h);
    }
    tx.execute(
        "UPDATE embeddings e SET source_version = d.v
         FROM unnest($2::text[], $3::text[], $4::text[], $5::int8[], $6::text[]) AS d(entity, crm, crm_id, v, h)
         WHERE e.model = $1 AND e.entity = d.entity AND e.crm = d.crm AND e.crm_id = d.crm_id
           AND e.content_hash = d.h AND e.source_version < d.v",
        &[&model, &es, &cs, &ids, &vs, &hs],
    )
    .await?;
    Ok(())
}

/// Removes the vectors (every model) of deleted records whose stored version is not newer than
/// the delete, their match lists, and their entries in other records' lists (those records are
/// queued to recompute theirs). Returns the keys whose vectors were removed.
pub async fn delete_records(
    tx: &impl GenericClient,
    deletes: &[(&Key, i64)],
) -> Result<HashSet<Key>> {
    if deletes.is_empty() {
        return Ok(HashSet::new());
    }
    let (mut es, mut cs, mut ids, mut vs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, v) in deletes {
        es.push(k.entity.as_str());
        cs.push(k.crm.as_str());
        ids.push(k.crm_id.as_str());
        vs.push(*v);
    }
    let rows = tx
        .query(
            "DELETE FROM embeddings e USING unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS d(entity, crm, crm_id, v)
             WHERE e.entity = d.entity AND e.crm = d.crm AND e.crm_id = d.crm_id AND e.source_version <= d.v
             RETURNING e.entity, e.crm, e.crm_id, e.model",
            &[&es, &cs, &ids, &vs],
        )
        .await?;
    let removed = keys_of(&rows);
    if removed.is_empty() {
        return Ok(removed);
    }
    // Per (model, record), so the lookups use the indexes that lead with the model.
    let (mut ms, mut es, mut cs, mut ids) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        es.push(r.get::<_, &str>(0));
        cs.push(r.get::<_, &str>(1));
        ids.push(r.get::<_, &str>(2));
        ms.push(r.get::<_, &str>(3));
    }
    let params: [&(dyn ToSql + Sync); 4] = [&ms, &es, &cs, &ids];
    // Records that listed a deleted one lose it from their top-k: recompute them, no cascade.
    tx.execute(
        "INSERT INTO match_queue (model, entity, crm, crm_id, cascade)
         SELECT DISTINCT m.model, m.from_entity, m.from_crm, m.from_id, false
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(model, entity, crm, crm_id)
         JOIN matches m ON m.model = d.model AND m.to_entity = d.entity AND m.to_crm = d.crm AND m.to_id = d.crm_id
         ON CONFLICT (model, entity, crm, crm_id) DO NOTHING",
        &params,
    )
    .await?;
    tx.execute(
        "DELETE FROM matches m USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(model, entity, crm, crm_id)
         WHERE m.model = d.model AND m.to_entity = d.entity AND m.to_crm = d.crm AND m.to_id = d.crm_id",
        &params,
    )
    .await?;
    tx.execute(
        "DELETE FROM matches m USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(model, entity, crm, crm_id)
         WHERE m.model = d.model AND m.from_entity = d.entity AND m.from_crm = d.crm AND m.from_id = d.crm_id",
        &params,
    )
    .await?;
    tx.execute(
        "DELETE FROM match_hungry h USING unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS d(model, entity, crm, crm_id)
         WHERE h.model = d.model AND h.entity = d.entity AND h.crm = d.crm AND h.crm_id = d.crm_id",
        &params,
    )
    .await?;
    Ok(removed)
}

/// Maps an unexpected `vector` type lookup failure to a readable error.
pub fn no_pgvector(e: Error) -> Error {
    if e.is_retriable() {
        // A lost connection says nothing about pgvector.
        return e;
    }
    Error::Other(format!("pgvector's `vector` type is not available: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_not_reported_as_missing_pgvector() {
        // Found by the soak: an embed instance starting as Postgres crashed ended on
        // "connection closed" instead of waiting for the database.
        let lost = Error::Store(crate::store::StoreError::Pool(
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait),
        ));
        let e = no_pgvector(lost);
        assert!(e.is_retriable(), "{e}");
        let missing = no_pgvector(Error::Other("type \"vector\" does not exist".into()));
        assert!(!missing.is_retriable());
        assert!(missing.to_string().contains("pgvector"), "{missing}");
    }
}
