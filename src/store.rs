//! PostgreSQL: connections (the pool and dedicated ones, TLS per `postgres.sslmode`, see
//! [`tls`]) and the schema migrations (`migrations/`, embedded with refinery).
//!
//! Every connection crmflow opens goes through [`PgConnect`]: the pool, migrations, the
//! readiness probe, `status`, `dlq`, benches and test helpers. It applies libpq's `prefer`
//! (TLS when offered; when the handshake fails, once more without TLS).
//!
//! Migrations run under a session advisory lock, so two processes starting at once apply them
//! one after the other (the second finds nothing to do), and running them twice is a no-op.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;

use crate::config::{Config, SslMode};

pub mod tls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Errors talking to Postgres.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres: {0}")]
    Pg(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("postgres pool setup: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("migration failed: {0}")]
    Migrate(#[from] refinery::Error),
    #[error("invalid schema name {0:?}: use letters, digits and underscores")]
    SchemaName(String),
    /// TLS settings that cannot be used (a file that cannot be read, verify-* without a CA).
    #[error("postgres TLS: {0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error(
        "schema {0:?} has no crmflow tables yet: run `crmflow migrate` (or `crmflow run`) first"
    )]
    NotMigrated(String),
}

impl StoreError {
    /// Whether retrying later can succeed: lost connections, serialization failures,
    /// deadlocks, a server that is starting or shutting down.
    pub fn is_retriable(&self) -> bool {
        use tokio_postgres::error::SqlState;
        let pg = match self {
            StoreError::Pg(e) => e,
            StoreError::Pool(deadpool_postgres::PoolError::Backend(e)) => e,
            StoreError::Pool(_) => return true,
            _ => return false,
        };
        // A certificate the configuration does not trust does not get trusted by waiting.
        if is_handshake_error(pg) {
            return false;
        }
        if pg.is_closed() || pg.as_db_error().is_none() {
            return true;
        }
        matches!(
            pg.code(),
            Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::CONNECTION_FAILURE
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::CRASH_SHUTDOWN
        )
    }
}

fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(StoreError::SchemaName(schema.to_owned()))
    }
}

/// Whether `e` is a failed TLS handshake (untrusted CA, host name mismatch).
pub fn is_handshake_error(e: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<tls::HandshakeError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Opens connections per the configuration: TLS per `sslmode` and the `prefer` fallback. The
/// one place connections are made (also the pool's `Connect`).
#[derive(Clone, Debug)]
pub struct PgConnect {
    tls: Option<tls::MakeRustls>,
    mode: SslMode,
}

impl PgConnect {
    /// Reads the TLS files now, so a bad path fails at start, not at the first query.
    pub fn new(cfg: &Config) -> Result<Self, StoreError> {
        Ok(Self {
            tls: tls::MakeRustls::new(&cfg.postgres)?,
            mode: cfg.postgres.sslmode,
        })
    }

    /// One connection; its driver runs on a spawned task (the handle ends with it).
    pub async fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error> {
        fn spawn<F>(conn: F) -> JoinHandle<()>
        where
            F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(error) = conn.await {
                    tracing::debug!(%error, "postgres connection closed");
                }
            })
        }
        let Some(tls) = &self.tls else {
            let (client, conn) = pg.connect(NoTls).await?;
            return Ok((client, spawn(conn)));
        };
        match pg.connect(tls.clone()).await {
            Ok((client, conn)) => Ok((client, spawn(conn))),
            Err(e) if self.mode == SslMode::Prefer && is_handshake_error(&e) => {
                tracing::debug!(error = %e, "TLS handshake failed; sslmode=prefer retries without TLS");
                let mut plain = pg.clone();
                plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = plain.connect(NoTls).await?;
                Ok((client, spawn(conn)))
            }
            Err(e) => Err(e),
        }
    }
}

impl deadpool_postgres::Connect for PgConnect {
    fn connect(
        &self,
        pg: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
    {
        let pg = pg.clone();
        Box::pin(async move { PgConnect::connect(self, &pg).await })
    }
}

/// Builds the pool (connections open lazily).
pub fn pool(cfg: &Config) -> Result<Pool, StoreError> {
    check_schema_name(&cfg.postgres.schema)?;
    let mgr = Manager::from_connect(
        cfg.pg_config(),
        PgConnect::new(cfg)?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(mgr)
        .max_size(cfg.postgres.pool_size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(cfg.postgres.connect_timeout_secs)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Opens one dedicated connection (its driver runs on a spawned task).
pub async fn connect(cfg: &Config) -> Result<tokio_postgres::Client, StoreError> {
    Ok(connect_with_driver(cfg).await?.0)
}

/// Opens one dedicated connection and returns its driver task too (to wait for a clean close).
pub async fn connect_with_driver(
    cfg: &Config,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), StoreError> {
    Ok(PgConnect::new(cfg)?.connect(&cfg.pg_config()).await?)
}

/// For read-only commands, which never migrate: an error naming the schema when crmflow's
/// tables are not there (nothing was ever run against it).
pub async fn require_schema(
    client: &impl deadpool_postgres::GenericClient,
    schema: &str,
) -> Result<(), StoreError> {
    let ok: bool = client
        .query_one(
            "SELECT to_regclass(format('%I.crmflow_schema_history', $1::text)) IS NOT NULL",
            &[&schema],
        )
        .await?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(StoreError::NotMigrated(schema.to_owned()))
    }
}

/// The migrations that were applied by this call (empty when the schema was up to date).
pub async fn migrate(cfg: &Config) -> Result<Vec<String>, StoreError> {
    check_schema_name(&cfg.postgres.schema)?;
    let mut client = connect(cfg).await?;
    let schema = &cfg.postgres.schema;
    // The lock key is per schema, so parallel test schemas do not wait for each other.
    client
        .execute(
            "SELECT pg_advisory_lock(hashtext('crmflow-migrate:' || $1))",
            &[schema],
        )
        .await?;
    // The connection's search_path was resolved before the schema existed (it may have been
    // created by another process while this one waited for the lock); setting it again here
    // makes every name below resolve into the schema, never into `public`.
    let result = async {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\", public"
            ))
            .await?;
        let current: Option<String> = client
            .query_one("SELECT current_schema()", &[])
            .await?
            .get(0);
        if current.as_deref() != Some(schema.as_str()) {
            return Err(StoreError::SchemaName(format!(
                "{schema} (search_path resolves to {current:?})"
            )));
        }
        let report = embedded::migrations::runner()
            .set_migration_table_name("crmflow_schema_history")
            .run_async(&mut client)
            .await?;
        Ok::<_, StoreError>(
            report
                .applied_migrations()
                .iter()
                .map(|m| m.to_string())
                .collect(),
        )
    }
    .await;
    client
        .execute(
            "SELECT pg_advisory_unlock(hashtext('crmflow-migrate:' || $1))",
            &[schema],
        )
        .await?;
    result
}
