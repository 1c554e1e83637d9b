//! Helpers: start a simulator, run the whole OAuth + REST login flow, and issue session calls.

use crmflow_bullhorn::sim::{SimConfig, SimHandle, Simulator};
use crmflow_bullhorn::wire::{LoginInfo, LoginResponse, TokenResponse};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::Value;

/// A logged-in REST session.
pub struct Session {
    /// Session base URL (`.../rest-services/{corp}/`).
    pub rest_url: String,
    /// `BhRestToken`.
    pub token: String,
}

/// Starts a simulator with test settings changed by `f`.
pub async fn start(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig::for_tests();
    f(&mut cfg);
    Simulator::start(cfg).await.expect("simulator starts")
}

/// A client that does not follow redirects (to inspect 302/307).
pub fn no_redirect() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Gets an authorization code through `/oauth/authorize`.
pub async fn auth_code(sim: &SimHandle, http: &Client) -> String {
    let c = sim.credentials();
    let info: LoginInfo = http
        .get(format!("{}/loginInfo", sim.rest_services_url()))
        .query(&[("username", c.username.as_str())])
        .send()
        .await
        .expect("loginInfo")
        .json()
        .await
        .expect("loginInfo json");
    let resp = no_redirect()
        .get(format!("{}/authorize", info.oauth_url))
        .query(&[
            ("client_id", c.client_id.as_str()),
            ("response_type", "code"),
            ("action", "Login"),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
            ("state", "xyz"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
        .to_string();
    let url = url::Url::parse(&location).expect("absolute Location");
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code in Location");
    assert!(
        location.contains("code=") && location.contains("%3A"),
        "code is URL-encoded: {location}"
    );
    code
}

/// Exchanges a code for tokens.
pub async fn exchange(sim: &SimHandle, http: &Client, code: &str) -> reqwest::Response {
    let c = sim.credentials();
    http.post(format!("{}/token", sim.oauth_url()))
        .query(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("token")
}

/// Opens a REST session with an access token.
pub async fn rest_login(sim: &SimHandle, http: &Client, access_token: &str) -> reqwest::Response {
    http.post(format!("{}/login", sim.rest_services_url()))
        .query(&[("version", "*"), ("access_token", access_token)])
        .send()
        .await
        .expect("login")
}

/// The whole flow: loginInfo, authorize, token, login.
pub async fn login(sim: &SimHandle) -> Session {
    let http = Client::new();
    let code = auth_code(sim, &http).await;
    let tok: TokenResponse = exchange(sim, &http, &code)
        .await
        .json()
        .await
        .expect("token json");
    let resp = rest_login(sim, &http, &tok.access_token).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let l: LoginResponse = resp.json().await.expect("login json");
    Session {
        rest_url: l.rest_url,
        token: l.bh_rest_token,
    }
}

impl Session {
    /// GET `{rest_url}{path}` with the token as a query parameter.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = Client::new()
            .get(format!("{}{path}", self.rest_url))
            .query(query)
            .query(&[("BhRestToken", self.token.as_str())])
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        let v = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap_or(Value::String(body))
        };
        (status, v)
    }

    /// Sends `method` with a JSON body and the token in the `BhRestToken` header.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Client::new()
            .request(method, format!("{}{path}", self.rest_url))
            .header("BhRestToken", &self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let v = resp.json().await.unwrap_or(Value::Null);
        (status, v)
    }
}

/// `GET /sim/state/{entity}` parsed.
pub async fn state(sim: &SimHandle, entity: &str) -> Vec<Value> {
    let body = Client::new()
        .get(format!("{}/sim/state/{entity}", sim.base_url()))
        .send()
        .await
        .expect("state")
        .text()
        .await
        .expect("state body");
    body.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}
