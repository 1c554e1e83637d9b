//! The Bullhorn source: builds the client from the configuration and runs either the incremental poller
//! (one task per entity, [`poller`]) or the event-subscription reader ([`events`]). Cursor arithmetic is in
//! [`cursor`]. Cursors live in `source_cursors` under source `bullhorn`: the entity name for the poller,
//! `events/<subscription id>` for the reader.

pub mod cursor;
pub mod events;
pub mod poller;

use std::time::Duration;

use crmflow_bullhorn::client::{BullhornClient, ClientConfig, Credentials};
use tokio_util::sync::CancellationToken;

use super::cursors::CursorStore;
use super::emit::Emitter;
use super::SourceError;
use crate::config::{BullhornConfig, BullhornMode, Config};
use crate::kafka::{Producer, Topics};
use crate::runtime::RunCtx;

/// `source` column of this source's cursors.
pub const SOURCE: &str = "bullhorn";

/// `fields=` read when the configuration names none for an entity.
const MINIMAL_FIELDS: &str = "id,dateAdded,dateLastModified,isDeleted";

/// The client settings of a Bullhorn configuration.
pub fn client_config(cfg: &BullhornConfig) -> Result<ClientConfig, SourceError> {
    let c = cfg.credentials()?;
    let mut cc = ClientConfig::new(
        cfg.rest_url.clone(),
        Credentials {
            client_id: c.client_id,
            client_secret: c.client_secret,
            username: c.username,
            password: c.password,
        },
    );
    cc.requests_per_minute = cfg.requests_per_minute;
    cc.max_concurrent_requests = cfg.max_concurrent_requests;
    Ok(cc)
}

/// The `fields=` list of an entity (configured, else minimal).
pub fn fields_of(cfg: &BullhornConfig, entity: &str) -> String {
    cfg.fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(entity))
        .map(|(_, v)| v.replace(char::is_whitespace, ""))
        .unwrap_or_else(|| MINIMAL_FIELDS.to_string())
}

/// Runs the source until shutdown (or caught up in one-shot mode).
pub async fn run(ctx: RunCtx) -> Result<(), SourceError> {
    run_with(&ctx.cfg, ctx.shutdown.clone(), ctx.until_caught_up).await
}

/// Same as [`run`] with explicit pieces (tests and the benchmark drive it this way).
pub async fn run_with(
    cfg: &Config,
    shutdown: CancellationToken,
    until_caught_up: bool,
) -> Result<(), SourceError> {
    let b = &cfg.bullhorn;
    let client = BullhornClient::connect(client_config(b)?).await?;
    let producer = Producer::new(&cfg.kafka)?;
    let cursors = CursorStore::new(crate::store::pool(cfg)?, SOURCE);
    let topics = Topics::new(&cfg.kafka);
    let interval = Duration::from_secs(b.poll_interval_secs);
    let result = match b.mode {
        BullhornMode::Poll => {
            let pollers = b.entities.iter().map(|entity| {
                let settings = poller::PollSettings {
                    entity: entity.clone(),
                    fields: fields_of(b, entity),
                    page_size: b.page_size.clamp(1, 500),
                    fetch_concurrency: b.fetch_concurrency,
                    overlap_ms: b.overlap_ms as i64,
                    interval,
                };
                let emitter = Emitter::new(
                    producer.clone(),
                    SOURCE,
                    entity,
                    topics.raw(SOURCE, entity),
                    "poll",
                );
                let p =
                    poller::EntityPoller::new(client.clone(), settings, emitter, cursors.clone());
                tokio::spawn(p.run(shutdown.clone(), until_caught_up))
            });
            let mut first_error = None;
            for joined in futures::future::join_all(pollers).await {
                let r = joined
                    .map_err(|e| SourceError::Stuck(format!("poller task failed: {e}")))
                    .and_then(|r| r);
                if let Err(e) = r {
                    shutdown.cancel();
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        }
        BullhornMode::Events => {
            let emitters = b
                .entities
                .iter()
                .map(|entity| {
                    (
                        Emitter::new(
                            producer.clone(),
                            SOURCE,
                            entity,
                            topics.raw(SOURCE, entity),
                            "events",
                        ),
                        fields_of(b, entity),
                    )
                })
                .collect();
            let reader = events::EventReader::open(
                client.clone(),
                &b.subscription_id,
                b.max_events,
                interval,
                emitters,
                cursors,
            )
            .await?;
            reader.run(shutdown, until_caught_up).await
        }
    };
    // Everything the cursors cover was acknowledged already; this only speeds up a clean exit.
    let _ = producer.flush(Duration::from_secs(10));
    tracing::info!(requests = client.requests_sent(), "bullhorn source stopped");
    result
}
