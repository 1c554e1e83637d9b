//! W3C `traceparent` on Kafka headers, so one CRM change is one trace from the poll that found
//! it to the vector written for it.
//!
//! Format: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. When OpenTelemetry is on,
//! the current span's context is used; otherwise a fresh random trace id is minted so every
//! event still carries an id that logs and lineage columns can join on.

use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
use opentelemetry::{SpanId, TraceId};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header name.
pub const TRACEPARENT: &str = "traceparent";

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
        let sc = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            if self.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
    }
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
    fn header_inject_extract() {
        let tp = TraceParent::current_or_new();
        let h = inject(OwnedHeaders::new(), &tp);
        assert_eq!(extract(Some(&h)), Some(tp));
        assert_eq!(extract::<OwnedHeaders>(None), None);
    }
}
