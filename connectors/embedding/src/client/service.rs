//! [`EmbeddingClient`]: one batch is one HTTP request, retried as a whole; bisecting isolates poison inputs.
//!
//! The request body is encoded once per batch and reused by every attempt, so a retry re-sends exactly the same
//! bytes: the service sees one batch, however many times it has to be tried. Every response is checked against
//! the contract (one vector per input, one dimension, finite values) before a vector leaves this module,
//! because a silent mismatch would store a vector under the wrong record.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Serialize;
use tracing::{debug, warn};
use url::Url;

use super::{ClientConfig, EmbedError, Protocol};
use crate::wire::{OpenAiResponse, TeiResponse};

/// Longest `Retry-After` we honour: a misconfigured server must not park the pipeline for hours; past this we
/// retry anyway and let the next answer decide.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// How much of an error body is kept in an [`EmbedError`]: enough for the reason, not a whole echoed payload.
const BODY_SNIPPET: usize = 512;

/// A client for one ML service. Cheap to clone (the connection pool is shared); safe to use concurrently, which
/// is how several batches are kept in flight.
#[derive(Debug, Clone)]
pub struct EmbeddingClient {
    /// The configuration it was built from.
    config: ClientConfig,
    /// Pooled HTTP client with the per-attempt timeout applied.
    http: reqwest::Client,
    /// Resolved once: the URL every batch is posted to.
    endpoint: Url,
}

/// Borrowed request bodies, so a batch is serialised straight from the caller's slice without copying texts.
#[derive(Serialize)]
struct TeiBody<'a> {
    inputs: &'a [String],
    truncate: bool,
}

#[derive(Serialize)]
struct OpenAiBody<'a> {
    model: &'a str,
    input: &'a [String],
}

impl EmbeddingClient {
    /// Builds the client; fails only if the HTTP stack cannot be initialised.
    pub fn new(config: ClientConfig) -> Result<Self, EmbedError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| EmbedError::Build {
                message: error_chain(&error),
            })?;
        let endpoint = config.endpoint();
        Ok(Self {
            config,
            http,
            endpoint,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Embeds `inputs` in one request and returns one vector per input, in input order.
    ///
    /// Retriable failures ([`EmbedError::is_retriable`]) are retried up to `max_retries` times with the same
    /// batch, waiting for the server's `Retry-After` when given, else a jittered exponential backoff. The error
    /// returned after the last attempt is the last one seen, so `is_retriable()` still tells the caller that
    /// the service, not the data, is the problem. An empty slice returns at once without a request.
    pub async fn embed(&self, inputs: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let body = self.encode(inputs)?;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result = self.attempt(body.clone(), inputs.len(), attempt).await;
            // One count per HTTP attempt, by outcome (crmflow's `crmflow_ml_*` metrics).
            let outcome = match &result {
                Ok(_) => "ok",
                Err(e) if e.is_retriable() => "retriable_error",
                Err(e) if e.is_input_rejection() => "rejected",
                Err(_) => "failed",
            };
            metrics::counter!("crmflow_ml_requests_total", "outcome" => outcome).increment(1);
            if result.is_ok() {
                metrics::counter!("crmflow_ml_inputs_total").increment(inputs.len() as u64);
            }
            match result {
                Ok(vectors) => {
                    if attempt > 1 {
                        debug!(
                            attempt,
                            batch_len = inputs.len(),
                            "embed succeeded after retrying"
                        );
                    }
                    return Ok(vectors);
                }
                Err(error) if error.is_retriable() && attempt <= self.config.max_retries => {
                    let delay = self.delay_before_retry(attempt, &error);
                    warn!(
                        attempt,
                        batch_len = inputs.len(),
                        delay_ms = delay.as_millis() as u64,
                        %error,
                        "embed failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    if error.is_retriable() {
                        warn!(attempt, batch_len = inputs.len(), %error, "embed failed, retries exhausted");
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Embeds `inputs`, isolating inputs the service rejects instead of failing the whole batch.
    ///
    /// A batch rejected for its content ([`EmbedError::is_input_rejection`]: 400, 413, 422) is split in halves,
    /// recursively, until each rejected input stands alone; every other input is embedded. The inner results are
    /// one per input, in input order: `Err` only for an input the service refused on its own (send it to the
    /// DLQ). The outer `Err` is a failure of the batch as a whole (service down after all retries, auth, a
    /// broken response): nothing may be committed and the caller should retry or stop; vectors already obtained
    /// for other halves are dropped with it.
    ///
    /// The halves are sent one after the other: bisecting is the rare path, and keeping it sequential leaves
    /// the in-flight budget to the caller.
    pub async fn embed_isolating(
        &self,
        inputs: &[String],
    ) -> Result<Vec<Result<Vec<f32>, EmbedError>>, EmbedError> {
        let mut results: Vec<Option<Result<Vec<f32>, EmbedError>>> =
            (0..inputs.len()).map(|_| None).collect();
        // Depth-first, left half first, so a single poison input costs about 2·log2(n) extra requests.
        let mut pending: Vec<Range<usize>> = Vec::with_capacity(16);
        pending.push(0..inputs.len());
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            match self.embed(&inputs[range.clone()]).await {
                Ok(vectors) => {
                    for (slot, vector) in results[range].iter_mut().zip(vectors) {
                        *slot = Some(Ok(vector));
                    }
                }
                Err(error) if error.is_input_rejection() && range.len() == 1 => {
                    warn!(index = range.start, %error, "input rejected by the ML service");
                    results[range.start] = Some(Err(error));
                }
                Err(error) if error.is_input_rejection() => {
                    let mid = range.start + range.len() / 2;
                    debug!(start = range.start, len = range.len(), %error, "batch rejected, bisecting");
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(error) => return Err(error),
            }
        }
        let results: Vec<Result<Vec<f32>, EmbedError>> = results
            .into_iter()
            .map(|slot| slot.expect("every input is settled by the loop"))
            .collect();
        // Each sub-batch was checked on its own; without a configured dimension they must still agree together.
        let mut dims = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().ok().map(|v| (i, v.len())));
        if let Some((_, expected)) = dims.next() {
            if let Some((index, got)) = dims.find(|&(_, got)| got != expected) {
                return Err(EmbedError::DimensionMismatch {
                    index,
                    expected,
                    got,
                });
            }
        }
        Ok(results)
    }

    /// Serialises the batch once; every attempt re-sends these bytes.
    fn encode(&self, inputs: &[String]) -> Result<Bytes, EmbedError> {
        let bytes = match self.config.protocol {
            Protocol::Tei => serde_json::to_vec(&TeiBody {
                inputs,
                truncate: true,
            }),
            Protocol::OpenAi => serde_json::to_vec(&OpenAiBody {
                model: &self.config.model,
                input: inputs,
            }),
        }
        .map_err(|error| EmbedError::Decode {
            message: error.to_string(),
        })?;
        Ok(Bytes::from(bytes))
    }

    /// One HTTP attempt: send, classify the status, decode and check the vectors. Each attempt
    /// is an HTTP client span (OpenTelemetry HTTP conventions; the URL without credentials or
    /// query, the resend count).
    async fn attempt(
        &self,
        body: Bytes,
        sent: usize,
        attempt: u32,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut url = self.endpoint.clone();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        url.set_query(None);
        let span = tracing::info_span!(
            "http",
            otel.name = "POST",
            otel.kind = "client",
            http.request.method = "POST",
            url.full = url.as_str(),
            server.address = url.host_str().unwrap_or(""),
            http.request.resend_count = i64::from(attempt.saturating_sub(1)),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            crmflow.ml.inputs = sent as i64,
        );
        let result =
            tracing::Instrument::instrument(self.attempt_inner(body, sent), span.clone()).await;
        if let Err(e) = &result {
            span.record(
                "error.type",
                e.to_string().chars().take(80).collect::<String>(),
            );
        }
        result
    }

    async fn attempt_inner(&self, body: Bytes, sent: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", i64::from(status.as_u16()));
        let retry_after = parse_retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&error))?;
        if !status.is_success() {
            return Err(status_error(status, retry_after, &bytes));
        }
        let vectors = match self.config.protocol {
            Protocol::Tei => serde_json::from_slice::<TeiResponse>(&bytes).map_err(decode_error)?,
            Protocol::OpenAi => order_by_index(
                serde_json::from_slice::<OpenAiResponse>(&bytes).map_err(decode_error)?,
                sent,
            )?,
        };
        check_vectors(&vectors, sent, self.config.expected_dim)?;
        Ok(vectors)
    }

    /// Delay before retry number `attempt` (1-based): the server's `Retry-After` when it gave one (capped at
    /// [`MAX_RETRY_AFTER`]), else `backoff_initial · 2^(attempt-1)` capped at `backoff_max`, drawn uniformly
    /// from its upper half so that concurrent batches do not retry in lock-step but still back off.
    fn delay_before_retry(&self, attempt: u32, error: &EmbedError) -> Duration {
        if let Some(retry_after) = error.retry_after() {
            return retry_after.min(MAX_RETRY_AFTER);
        }
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let ceiling = self
            .config
            .backoff_initial
            .saturating_mul(factor)
            .min(self.config.backoff_max);
        let half = ceiling / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    fn transport_error(&self, error: &reqwest::Error) -> EmbedError {
        if error.is_timeout() {
            EmbedError::Timeout {
                after: self.config.timeout,
            }
        } else {
            EmbedError::Transport {
                message: error_chain(error),
            }
        }
    }
}

/// Maps a non-2xx status to its error kind; the kinds carry the retry/bisect decisions.
fn status_error(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> EmbedError {
    let body = snippet(body);
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        EmbedError::RateLimited { retry_after, body }
    } else if status.is_server_error() {
        EmbedError::Server {
            status: code,
            retry_after,
            body,
        }
    } else {
        EmbedError::Rejected { status: code, body }
    }
}

/// OpenAI answers carry an `index` per vector and need not be in input order.
fn order_by_index(response: OpenAiResponse, sent: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    if response.data.len() != sent {
        return Err(EmbedError::CountMismatch {
            sent,
            received: response.data.len(),
        });
    }
    let mut slots: Vec<Option<Vec<f32>>> = (0..sent).map(|_| None).collect();
    for item in response.data {
        match slots.get_mut(item.index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            _ => return Err(EmbedError::BadIndex { index: item.index }),
        }
    }
    // Count matched and no index repeated or out of range, so every slot is filled.
    Ok(slots
        .into_iter()
        .map(|slot| slot.unwrap_or_default())
        .collect())
}

/// The response contract: one vector per input, all of one (expected) non-zero dimension, finite values.
fn check_vectors(
    vectors: &[Vec<f32>],
    sent: usize,
    expected_dim: Option<usize>,
) -> Result<(), EmbedError> {
    if vectors.len() != sent {
        return Err(EmbedError::CountMismatch {
            sent,
            received: vectors.len(),
        });
    }
    let Some(first) = vectors.first() else {
        return Ok(());
    };
    let expected = expected_dim.unwrap_or(first.len());
    for (index, vector) in vectors.iter().enumerate() {
        if vector.len() != expected || vector.is_empty() {
            return Err(EmbedError::DimensionMismatch {
                index,
                expected,
                got: vector.len(),
            });
        }
        if !vector.iter().all(|x| x.is_finite()) {
            return Err(EmbedError::NonFinite { index });
        }
    }
    Ok(())
}

/// `Retry-After` in seconds (integer or decimal). The HTTP-date form is ignored: ML services send seconds, and
/// without it we fall back to our own backoff, which is safe.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())))
}

fn decode_error(error: serde_json::Error) -> EmbedError {
    EmbedError::Decode {
        message: error.to_string(),
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_SNIPPET)]);
    text.trim().to_owned()
}

/// reqwest's `Display` shows only the outermost layer ("error sending request"); the cause is in the chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::OpenAiEmbedding;

    fn openai(indices: &[usize]) -> OpenAiResponse {
        OpenAiResponse {
            data: indices
                .iter()
                .map(|&index| OpenAiEmbedding {
                    index,
                    embedding: vec![index as f32],
                })
                .collect(),
            model: "m".into(),
            usage: Default::default(),
        }
    }

    #[test]
    fn openai_vectors_are_ordered_by_index() {
        let ordered = order_by_index(openai(&[2, 0, 1]), 3).unwrap();
        assert_eq!(ordered, vec![vec![0.0], vec![1.0], vec![2.0]]);
        assert!(matches!(
            order_by_index(openai(&[0, 0, 1]), 3),
            Err(EmbedError::BadIndex { index: 0 })
        ));
        assert!(matches!(
            order_by_index(openai(&[0, 3, 1]), 3),
            Err(EmbedError::BadIndex { index: 3 })
        ));
        assert!(matches!(
            order_by_index(openai(&[0, 1]), 3),
            Err(EmbedError::CountMismatch {
                sent: 3,
                received: 2
            })
        ));
    }

    #[test]
    fn response_contract_is_checked() {
        let ok = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        assert!(check_vectors(&ok, 2, None).is_ok());
        assert!(check_vectors(&ok, 2, Some(2)).is_ok());
        assert!(matches!(
            check_vectors(&ok, 3, None),
            Err(EmbedError::CountMismatch { .. })
        ));
        assert!(matches!(
            check_vectors(&ok, 2, Some(3)),
            Err(EmbedError::DimensionMismatch {
                index: 0,
                expected: 3,
                got: 2
            })
        ));
        let ragged = vec![vec![1.0, 0.0], vec![1.0]];
        assert!(matches!(
            check_vectors(&ragged, 2, None),
            Err(EmbedError::DimensionMismatch {
                index: 1,
                expected: 2,
                got: 1
            })
        ));
        let nan = vec![vec![1.0, f32::NAN]];
        assert!(matches!(
            check_vectors(&nan, 1, None),
            Err(EmbedError::NonFinite { index: 0 })
        ));
    }

    #[test]
    fn statuses_map_to_error_kinds() {
        let secs = Some(Duration::from_secs(1));
        assert!(matches!(
            status_error(StatusCode::TOO_MANY_REQUESTS, secs, b""),
            EmbedError::RateLimited { .. }
        ));
        assert!(matches!(
            status_error(StatusCode::BAD_GATEWAY, None, b""),
            EmbedError::Server { status: 502, .. }
        ));
        let rejected = status_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            b"{\"error\":\"bad\"}",
        );
        assert!(rejected.is_input_rejection());
        assert!(format!("{rejected}").contains("bad"));
    }

    #[test]
    fn retry_after_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        for (value, want) in [
            ("2", Some(Duration::from_secs(2))),
            ("0.5", Some(Duration::from_millis(500))),
            ("99999", Some(MAX_RETRY_AFTER)),
            ("-1", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ] {
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            assert_eq!(parse_retry_after(&headers), want, "{value}");
        }
    }

    #[test]
    fn backoff_grows_jittered_and_capped() {
        let mut config = ClientConfig::new(Url::parse("http://h").unwrap(), Protocol::Tei, "m");
        config.backoff_initial = Duration::from_millis(100);
        config.backoff_max = Duration::from_millis(1000);
        let client = EmbeddingClient::new(config).unwrap();
        let error = EmbedError::Timeout {
            after: Duration::from_secs(1),
        };
        for (attempt, ceiling_ms) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (40, 1000),
        ] {
            for _ in 0..20 {
                let delay = client.delay_before_retry(attempt, &error).as_millis() as u64;
                assert!(
                    (ceiling_ms / 2..=ceiling_ms).contains(&delay),
                    "attempt {attempt}: {delay} ms"
                );
            }
        }
        let limited = EmbedError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            body: String::new(),
        };
        assert_eq!(
            client.delay_before_retry(1, &limited),
            Duration::from_secs(3)
        );
    }
}
