//! Client configuration: where the ML service is, which protocol it speaks, and how patient to be with it.
//!
//! Values arrive already parsed (a [`Url`], [`Duration`]s), so the client never validates strings; the
//! pipeline's config layer maps its TOML/env (`ML_SERVICE_URL`, ...) onto this struct.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

/// Default per-request timeout: generous, because a batch of 500 on a busy CPU-only TEI can take seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries after the first attempt of a batch.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Default first backoff delay; doubles on each retry.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// Default cap on a computed backoff delay (a server's `Retry-After` may ask for longer and is honoured).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Which HTTP API the ML service speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Hugging Face text-embeddings-inference: `POST {base}/embed`.
    Tei,
    /// OpenAI-compatible: `POST {base}/v1/embeddings` (or `{base}/embeddings` when the base ends in `/v1`).
    OpenAi,
}

/// Everything [`EmbeddingClient`](super::EmbeddingClient) needs. `Debug` never shows the API key
/// ([`SecretString`] redacts it).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Service root, e.g. `http://127.0.0.1:8282`; a path prefix is kept.
    pub base_url: Url,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Model name: sent in OpenAI requests; TEI serves one fixed model and ignores it.
    pub model: String,
    /// Timeout of one HTTP attempt, connect to last body byte.
    pub timeout: Duration,
    /// Retries after the first attempt for retriable failures (so `max_retries + 1` attempts in all).
    pub max_retries: u32,
    /// First backoff delay; doubles per retry, jittered.
    pub backoff_initial: Duration,
    /// Cap on the computed backoff delay.
    pub backoff_max: Duration,
    /// Sent as `Authorization: Bearer <key>` when set (TEI `--api-key`, OpenAI keys).
    pub api_key: Option<SecretString>,
    /// When set, every vector must have exactly this dimension (the `vector(dim)` column it is headed for).
    pub expected_dim: Option<usize>,
}

impl ClientConfig {
    /// A configuration with the default timeouts and retry policy.
    pub fn new(base_url: Url, protocol: Protocol, model: impl Into<String>) -> Self {
        Self {
            base_url,
            protocol,
            model: model.into(),
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            api_key: None,
            expected_dim: None,
        }
    }

    /// The URL the batches are posted to.
    pub fn endpoint(&self) -> Url {
        let mut url = self.base_url.clone();
        // Join by hand: `Url::join` would drop the last path segment of a base without a trailing slash.
        let base = url.path().trim_end_matches('/').to_owned();
        let path = match self.protocol {
            Protocol::Tei => format!("{base}/embed"),
            // OpenAI-compatible base URLs are conventionally given with the `/v1` already on.
            Protocol::OpenAi if base.ends_with("/v1") => format!("{base}/embeddings"),
            Protocol::OpenAi => format!("{base}/v1/embeddings"),
        };
        url.set_path(&path);
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_joins_paths() {
        let cases = [
            ("http://h:1", Protocol::Tei, "http://h:1/embed"),
            ("http://h:1/", Protocol::Tei, "http://h:1/embed"),
            ("http://h:1/ml", Protocol::Tei, "http://h:1/ml/embed"),
            ("http://h:1", Protocol::OpenAi, "http://h:1/v1/embeddings"),
            (
                "http://h:1/v1/",
                Protocol::OpenAi,
                "http://h:1/v1/embeddings",
            ),
            (
                "http://h:1/proxy",
                Protocol::OpenAi,
                "http://h:1/proxy/v1/embeddings",
            ),
        ];
        for (base, protocol, want) in cases {
            let config = ClientConfig::new(Url::parse(base).unwrap(), protocol, "m");
            assert_eq!(config.endpoint().as_str(), want, "{base} {protocol:?}");
        }
    }

    #[test]
    fn debug_hides_api_key() {
        let mut config = ClientConfig::new(Url::parse("http://h").unwrap(), Protocol::OpenAi, "m");
        config.api_key = Some(SecretString::from("sk-very-secret"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("api_key"), "{shown}");
    }

    #[test]
    fn protocol_names() {
        assert_eq!(
            serde_json::from_str::<Protocol>("\"tei\"").unwrap(),
            Protocol::Tei
        );
        assert_eq!(
            serde_json::from_str::<Protocol>("\"openai\"").unwrap(),
            Protocol::OpenAi
        );
    }
}
