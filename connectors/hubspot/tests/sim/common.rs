//! Helpers: start a simulator, a webhook receiver that records what it gets, and authenticated requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use crmflow_hubspot::sim::{SimConfig, SimHandle, Simulator};
use parking_lot::Mutex;

/// Starts a simulator with test settings changed by `f`.
pub async fn start(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig::for_tests();
    f(&mut cfg);
    Simulator::start(cfg).await.expect("simulator starts")
}

/// An HTTP client.
pub fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Path and query as received.
    pub path_and_query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
}

impl Captured {
    /// A header as a string.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// The events of the batch.
    pub fn events(&self) -> Vec<crmflow_hubspot::wire::WebhookEvent> {
        serde_json::from_slice(&self.body).expect("a JSON array of events")
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 500.
    Fail,
    /// Sleep this many milliseconds, then 204 (too late for a short sender timeout).
    Slow(u64),
}

/// How the receiver answers the next requests (then 204).
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Answers of the next requests, in order.
    pub plan: std::collections::VecDeque<Answer>,
}

/// A webhook receiver on a free port.
pub struct Receiver {
    /// `http://127.0.0.1:PORT/hubspot/webhooks?app=crmflow`.
    pub url: String,
    /// Every request, in arrival order (failed ones too).
    pub got: Arc<Mutex<Vec<Captured>>>,
    /// Answers.
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// Requests that were answered 2xx.
    pub accepted: Arc<Mutex<Vec<Captured>>>,
}

type RxState = (
    Arc<Mutex<Vec<Captured>>>,
    Arc<Mutex<Behaviour>>,
    Arc<Mutex<Vec<Captured>>>,
);

async fn receive(
    State((got, behaviour, accepted)): State<RxState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let c = Captured {
        path_and_query: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
        body,
    };
    got.lock().push(c.clone());
    let answer = behaviour.lock().plan.pop_front();
    match answer {
        Some(Answer::Fail) => StatusCode::INTERNAL_SERVER_ERROR,
        Some(Answer::Slow(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            StatusCode::NO_CONTENT
        }
        None => {
            accepted.lock().push(c);
            StatusCode::NO_CONTENT
        }
    }
}

impl Receiver {
    /// Starts a receiver.
    pub async fn start() -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour::default()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/hubspot/webhooks", post(receive))
            .with_state((got.clone(), behaviour.clone(), accepted.clone()));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hubspot/webhooks?app=crmflow"),
            got,
            behaviour,
            accepted,
        }
    }

    /// Waits until `pred` holds for the accepted requests (at most `secs`).
    pub async fn wait_for(&self, secs: u64, pred: impl Fn(&[Captured]) -> bool) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            {
                let a = self.accepted.lock();
                if pred(&a) {
                    return a.clone();
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "webhooks did not arrive in {secs} s: got {} requests, {} accepted",
                self.got.lock().len(),
                self.accepted.lock().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Number of events in the accepted batches.
pub fn event_count(batches: &[Captured]) -> usize {
    batches.iter().map(|c| c.events().len()).sum()
}
