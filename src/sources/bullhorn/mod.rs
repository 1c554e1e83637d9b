//! The Bullhorn source ([`BullhornSource`], registered as [`KIND`]): builds the client from the
//! configuration and runs either the incremental poller (one task per entity, [`poller`]) or, in events
//! mode, snapshot-then-stream: it opens the event subscription first (Bullhorn keeps every event from
//! then on), reads every record by poll with the snapshot's own cursor (phase `snapshot`; a restart
//! resumes it), then follows the events ([`events`], phase `streaming`). Cursor arithmetic is in
//! [`cursor`], the record's id/version/op in [`record`]. Cursors live in `source_cursors` under source
//! `bullhorn`: the entity name for the poller, `snapshot/<entity>` for a snapshot,
//! `events/<subscription id>` for the reader.

pub mod cursor;
pub mod events;
pub mod poller;
pub mod record;

use std::time::Duration;

use crmflow_bullhorn::client::{BullhornClient, ClientConfig, Credentials};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::cursors::{Phase, PhaseState};
use super::{Source, SourceError, SourceIo, SourceKind};
use crate::config::{BullhornConfig, BullhornMode, Config};

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

/// The Bullhorn entry of [`super::KINDS`]: on unless `bullhorn.enabled = false`.
pub const KIND: SourceKind = SourceKind {
    name: SOURCE,
    configured: is_configured,
    how_to_configure: "set bullhorn.enabled = true and the BULLHORN_* credentials",
    build,
};

fn is_configured(cfg: &Config) -> bool {
    cfg.bullhorn.enabled
}

fn build(cfg: &Config) -> Result<Box<dyn Source>, SourceError> {
    Ok(Box::new(BullhornSource {
        cfg: cfg.bullhorn.clone(),
    }))
}

/// The Bullhorn source of one configuration.
pub struct BullhornSource {
    cfg: BullhornConfig,
}

impl Source for BullhornSource {
    fn crm(&self) -> &'static str {
        SOURCE
    }

    fn entities(&self) -> Vec<String> {
        self.cfg.entities.clone()
    }

    fn run(&self, io: SourceIo) -> BoxFuture<'_, Result<(), SourceError>> {
        Box::pin(read(&self.cfg, io))
    }
}

/// Runs the source alone (no lease) until `shutdown`, or caught up in one-shot mode (tests and the
/// benchmark drive it this way; `crmflow run` goes through [`super::run`]).
pub async fn run_with(
    cfg: &Config,
    shutdown: CancellationToken,
    until_caught_up: bool,
) -> Result<(), SourceError> {
    let io = SourceIo::unfenced(cfg, SOURCE, shutdown, until_caught_up)?;
    read(&cfg.bullhorn, io).await
}

/// Reads Bullhorn through `io` in the configured mode.
async fn read(b: &BullhornConfig, io: SourceIo) -> Result<(), SourceError> {
    let client = BullhornClient::connect(client_config(b)?).await?;
    let result = match b.mode {
        BullhornMode::Poll => {
            for entity in &b.entities {
                set_phase(&io, entity, Phase::Polling, 0, None).await?;
            }
            let settings = b
                .entities
                .iter()
                .map(|e| poller::PollSettings::incremental(b, e))
                .collect();
            poll_all(&client, &io, settings, "poll", io.until_caught_up).await
        }
        BullhornMode::Events => snapshot_then_stream(&client, b, &io).await,
    };
    // Everything the cursors cover was acknowledged already; this only speeds up a clean exit.
    io.flush();
    info!(requests = client.requests_sent(), "bullhorn source stopped");
    result
}

async fn set_phase(
    io: &SourceIo,
    entity: &str,
    phase: Phase,
    read: i64,
    total: Option<i64>,
) -> Result<(), SourceError> {
    io.cursors()
        .set_phase(entity, PhaseState { phase, read, total })
        .await
}

/// Runs one poller per settings entry until `io.shutdown` (or each caught up, with
/// `until_caught_up`). The first failure stops the others.
async fn poll_all(
    client: &BullhornClient,
    io: &SourceIo,
    settings: Vec<poller::PollSettings>,
    mode: &'static str,
    until_caught_up: bool,
) -> Result<(), SourceError> {
    let stop = io.shutdown.child_token();
    let pollers = settings.into_iter().map(|settings| {
        let emitter = io.emitter(&settings.entity, mode);
        let p = poller::EntityPoller::new(client.clone(), settings, emitter, io.cursors().clone());
        tokio::spawn(p.run(stop.clone(), until_caught_up))
    });
    let mut first_error = None;
    for joined in futures::future::join_all(pollers).await {
        let r = joined
            .map_err(|e| SourceError::Stuck(format!("poller task failed: {e}")))
            .and_then(|r| r);
        if let Err(e) = r {
            stop.cancel();
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Events mode: subscription first, then the snapshot (entities not `streaming` yet), then the events.
async fn snapshot_then_stream(
    client: &BullhornClient,
    b: &BullhornConfig,
    io: &SourceIo,
) -> Result<(), SourceError> {
    let cursors = io.cursors();
    // A reader without saved state starts at the subscription's current position: everything before it
    // needs the snapshot. Its entities are marked `snapshot` before the reader's state is saved, so a
    // crash in between still snapshots on the next start.
    let fresh = cursors
        .load::<events::EventState>(&events::state_key(&b.subscription_id))
        .await?
        .is_none();
    let mut snapshot = Vec::new();
    for entity in &b.entities {
        let phase = cursors.phase(entity).await?;
        let resume = phase.is_some_and(|p| p.phase == Phase::Snapshot);
        if fresh && !resume {
            // Switching from poll mode: what the poller read need not be read again.
            let key = poller::snapshot_key(entity);
            if cursors.load::<serde_json::Value>(&key).await?.is_none() {
                if let Some(c) = cursors.load::<cursor::Cursor>(entity).await? {
                    cursors.save(&key, &Some(c)).await?;
                }
            }
            set_phase(io, entity, Phase::Snapshot, 0, None).await?;
        }
        if fresh || resume {
            snapshot.push(entity.clone());
        }
    }
    let emitters = b
        .entities
        .iter()
        .map(|entity| (io.emitter(entity, "events"), fields_of(b, entity)))
        .collect();
    let reader = events::EventReader::open(
        client.clone(),
        &b.subscription_id,
        b.max_events,
        Duration::from_secs(b.poll_interval_secs),
        emitters,
        cursors.clone(),
    )
    .await?;

    if !snapshot.is_empty() {
        info!(entities = ?snapshot, "bullhorn snapshot before following events");
        let settings = snapshot
            .iter()
            .map(|e| poller::PollSettings::snapshot(b, e))
            .collect();
        // The snapshot is a poll: its events say so.
        poll_all(client, io, settings, "poll", true).await?;
        if io.shutdown.is_cancelled() {
            return Ok(());
        }
        for entity in &snapshot {
            let read = cursors.phase(entity).await?.map_or(0, |p| p.read);
            set_phase(io, entity, Phase::Streaming, read, Some(read)).await?;
        }
        info!(entities = ?snapshot, "bullhorn snapshot done, following events");
    }
    for entity in b.entities.iter().filter(|e| !snapshot.contains(e)) {
        let phase = cursors.phase(entity).await?;
        if phase.is_none_or(|p| p.phase != Phase::Streaming) {
            set_phase(io, entity, Phase::Streaming, 0, None).await?;
        }
    }
    reader.run(io.shutdown.clone(), io.until_caught_up).await
}
