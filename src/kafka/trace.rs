//! W3C `traceparent` on Kafka headers, so one CRM change is one trace from the poll that found
//! it to the vector written for it.
//!
//! Format: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
//!
//! Sampling (ARCHITECTURE §7): per-record spans at 100k records/s are too expensive, so every
//! change gets its own trace id at the source ([`TraceParent::for_change`]) and the *source*
//! decides once, with `telemetry.sample_ratio`, whether it is sampled; the flag travels in the
//! header. Every stage then adds a child span in a sampled record's own trace
//! ([`record_span`]) and passes that span's context on downstream ([`downstream`]); batch spans
//! (one per batch per stage, OTel messaging conventions) link to the sampled records' contexts
//! ([`link_sampled`]). An unsampled record costs one header and a flag test per stage. With
//! export off (no OTLP endpoint) nothing is sampled and no span is built.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{SpanId, TraceId};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header name.
pub const TRACEPARENT: &str = "traceparent";

/// Links one batch span carries at most (the SDK's default span limit).
pub const MAX_LINKS: usize = 128;

static EXPORTING: AtomicBool = AtomicBool::new(false);
static RATIO_BITS: AtomicU64 = AtomicU64::new(0);

/// Turns span building on (an exporter is installed) with the sources' sample ratio.
pub fn enable(sample_ratio: f64) {
    RATIO_BITS.store(sample_ratio.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
    EXPORTING.store(true, Ordering::Relaxed);
}

/// Whether spans are exported (batch spans are built only then).
#[inline]
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The share of changes the sources sample (0 while export is off).
pub fn sample_ratio() -> f64 {
    if exporting() {
        f64::from_bits(RATIO_BITS.load(Ordering::Relaxed))
    } else {
        0.0
    }
}

/// The TraceIdRatioBased decision: the trace id's low 8 bytes below `ratio` × 2^64, so the
/// same id always gets the same answer.
pub fn sampled_by_ratio(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let low = u64::from_be_bytes(trace_id[8..16].try_into().expect("8 bytes"));
    (low as f64) < ratio * (u64::MAX as f64)
}

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// The current span's context, or a new random trace when tracing export is off.
    pub fn current_or_new() -> Self {
        let ctx = tracing::Span::current().context();
        let span = ctx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            return Self {
                trace_id: sc.trace_id().to_bytes(),
                span_id: sc.span_id().to_bytes(),
                sampled: sc.is_sampled(),
            };
        }
        Self {
            trace_id: rand::random(),
            span_id: rand::random(),
            sampled: false,
        }
    }

    /// A new trace for one change, sampled with the configured ratio. `parent`, the source's
    /// page or poll context, is not its parent: each change is its own trace.
    pub fn for_change() -> Self {
        let trace_id: [u8; 16] = rand::random();
        Self {
            sampled: sampled_by_ratio(&trace_id, sample_ratio()),
            trace_id,
            span_id: rand::random(),
        }
    }

    /// The context of `span`, when OpenTelemetry gave it one.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        let ctx = span.context();
        let s = ctx.span();
        let sc = s.span_context();
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
        })
    }

    /// As an OpenTelemetry span context (remote).
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            if self.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        )
    }

    /// `00-…-…-0x`.
    pub fn to_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.span_id),
            u8::from(self.sampled)
        )
    }

    /// Parses a `traceparent` value; `None` for anything malformed or all-zero ids.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex::decode_to_slice(trace, &mut trace_id).ok()?;
        hex::decode_to_slice(span, &mut span_id).ok()?;
        let flags = u8::from_str_radix(flags.get(..2)?, 16).ok()?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// Hex trace id, as stored in lineage columns.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// Makes this the remote parent of `span`, when OpenTelemetry is on.
    pub fn set_as_parent_of(&self, span: &tracing::Span) {
        let _ = span.set_parent(
            opentelemetry::Context::new().with_remote_span_context(self.span_context()),
        );
    }
}

/// The source side of one change: its trace, sampled with the configured ratio. A sampled
/// change gets a root span (the CRM read, linked to `page`, the request that found it) and a
/// `send` child for the raw produce, whose context is what the header carries; both spans are
/// returned so they last until the caller sent the message. An unsampled one gets a random
/// trace id with the flag off, and no span.
pub fn source_change(
    page: Option<&TraceParent>,
    crm: &str,
    entity: &str,
    record_id: &str,
    version: i64,
    topic: &str,
) -> (TraceParent, Option<(tracing::Span, tracing::Span)>) {
    let ratio = sample_ratio();
    let sampled = ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio);
    if !sampled {
        let mut tp = TraceParent::for_change();
        tp.sampled = false;
        return (tp, None);
    }
    let read = tracing::info_span!(
        parent: None,
        "record",
        otel.name = format!("{crm} read {entity}"),
        otel.kind = "internal",
        crmflow.stage = "ingest",
        crmflow.crm = crm,
        crmflow.entity = entity,
        crmflow.record_id = record_id,
        crmflow.source_version = version,
    );
    if let Some(page) = page.filter(|p| p.sampled) {
        read.add_link(page.span_context());
    }
    let send = tracing::info_span!(
        parent: &read,
        "record",
        otel.name = format!("send {topic}"),
        otel.kind = "producer",
        messaging.system = "kafka",
        messaging.operation.type = "send",
        messaging.operation.name = "send",
        messaging.destination.name = topic,
        messaging.kafka.message.key = record_id,
        crmflow.stage = "ingest",
    );
    match TraceParent::of_span(&send) {
        Some(tp) => (tp, Some((read, send))),
        None => (TraceParent::for_change(), None),
    }
}

/// A child span in a sampled record's own trace: `make` is called (and the span built) only
/// when `tp` is sampled and spans are exported; the span's parent is the record's context.
pub fn record_span(
    tp: Option<&TraceParent>,
    make: impl FnOnce() -> tracing::Span,
) -> Option<tracing::Span> {
    let tp = tp.filter(|t| t.sampled && exporting())?;
    let span = make();
    tp.set_as_parent_of(&span);
    Some(span)
}

/// What to put in the outgoing header: the record span's context when the record is sampled
/// (so the next stage's span is its child), else the incoming traceparent unchanged.
pub fn downstream(span: Option<&tracing::Span>, incoming: Option<TraceParent>) -> TraceParent {
    span.and_then(TraceParent::of_span)
        .or(incoming)
        .unwrap_or_else(TraceParent::for_change)
}

/// Links `span` (a batch span) to the sampled records among `tps`, at most [`MAX_LINKS`].
pub fn link_sampled<'a>(span: &tracing::Span, tps: impl IntoIterator<Item = &'a TraceParent>) {
    if !exporting() || span.is_none() {
        return;
    }
    for tp in tps.into_iter().filter(|t| t.sampled).take(MAX_LINKS) {
        span.add_link(tp.span_context());
    }
}

/// A batch span (`process` of a consumer, `send` of a producer) following the OpenTelemetry
/// messaging conventions, or a disabled span while export is off. `operation` is `process` or
/// `send`; `destination` the topic (or topics, comma-separated).
pub fn batch_span(
    stage: &'static str,
    operation: &'static str,
    destination: &str,
    count: usize,
) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    let kind = if operation == "send" {
        "producer"
    } else {
        "consumer"
    };
    tracing::info_span!(
        "batch",
        otel.name = format!("{operation} {destination}"),
        otel.kind = kind,
        messaging.system = "kafka",
        messaging.operation.type = operation,
        messaging.operation.name = operation,
        messaging.destination.name = destination,
        messaging.batch.message_count = count as i64,
        messaging.consumer.group.name = tracing::field::Empty,
        messaging.destination.partition.id = tracing::field::Empty,
        messaging.kafka.offset.first = tracing::field::Empty,
        messaging.kafka.offset.last = tracing::field::Empty,
        crmflow.stage = stage,
    )
}

/// Partition and offset range of a batch span's messages (`(partition, offset)` pairs): the
/// partition when they share one, the first and last offset.
pub fn record_offsets(span: &tracing::Span, offsets: impl IntoIterator<Item = (i32, i64)>) {
    if span.is_none() {
        return;
    }
    let mut parts = std::collections::BTreeSet::new();
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for (p, o) in offsets {
        parts.insert(p);
        lo = lo.min(o);
        hi = hi.max(o);
    }
    if parts.is_empty() {
        return;
    }
    let list: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
    span.record("messaging.destination.partition.id", list.join(","));
    span.record("messaging.kafka.offset.first", lo);
    span.record("messaging.kafka.offset.last", hi);
}

/// A Postgres write span (database conventions): `operation` (`COPY`, `INSERT`, ...) on
/// `table`, `rows` rows.
pub fn db_span(operation: &'static str, table: &str, rows: usize) -> tracing::Span {
    if !exporting() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "db",
        otel.name = format!("{operation} {table}"),
        otel.kind = "client",
        db.system.name = "postgresql",
        db.operation.name = operation,
        db.collection.name = table,
        db.operation.batch.size = rows as i64,
        db.response.affected_rows = tracing::field::Empty,
    )
}

/// Adds `traceparent` to a header set.
pub fn inject(headers: OwnedHeaders, tp: &TraceParent) -> OwnedHeaders {
    headers.insert(Header {
        key: TRACEPARENT,
        value: Some(tp.to_header().as_bytes()),
    })
}

/// Reads `traceparent` from a message's headers.
pub fn extract<H: Headers>(headers: Option<&H>) -> Option<TraceParent> {
    let headers = headers?;
    headers
        .iter()
        .find(|h| h.key == TRACEPARENT)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(TraceParent::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let tp = TraceParent::current_or_new();
        let s = tp.to_header();
        assert_eq!(s.len(), 55);
        assert_eq!(TraceParent::parse(&s), Some(tp));
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let p = TraceParent::parse(w3c).unwrap();
        assert!(p.sampled);
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.to_header(), w3c);
        for bad in [
            "",
            "00-xyz",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ratio_sampling_is_deterministic_and_proportional() {
        let ids: Vec<[u8; 16]> = (0..20_000).map(|_| rand::random()).collect();
        let share = |r: f64| ids.iter().filter(|t| sampled_by_ratio(t, r)).count();
        assert_eq!(share(0.0), 0);
        assert_eq!(share(1.0), ids.len());
        let one_percent = share(0.01);
        assert!((120..=280).contains(&one_percent), "{one_percent}");
        let half = share(0.5);
        assert!((9_500..=10_500).contains(&half), "{half}");
        // The same id always gets the same answer, and a sampled id stays sampled at a higher
        // ratio.
        for t in &ids[..100] {
            assert_eq!(sampled_by_ratio(t, 0.3), sampled_by_ratio(t, 0.3));
            assert!(!sampled_by_ratio(t, 0.3) || sampled_by_ratio(t, 0.6));
        }
    }

    #[test]
    fn unsampled_or_unexported_records_get_no_span() {
        let tp = TraceParent {
            trace_id: [1; 16],
            span_id: [2; 8],
            sampled: false,
        };
        let mut built = false;
        assert!(record_span(Some(&tp), || {
            built = true;
            tracing::Span::none()
        })
        .is_none());
        assert!(!built, "no span is built for an unsampled record");
        assert_eq!(downstream(None, Some(tp)), tp, "the header passes through");
    }

    #[test]
    fn header_inject_extract() {
        let tp = TraceParent::current_or_new();
        let h = inject(OwnedHeaders::new(), &tp);
        assert_eq!(extract(Some(&h)), Some(tp));
        assert_eq!(extract::<OwnedHeaders>(None), None);
    }
}
