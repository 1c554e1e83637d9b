//! OAuth flow, single-use codes and refresh tokens, REST login, session errors (412/401), 307 discovery.

use crate::common::{auth_code, exchange, login, no_redirect, rest_login, start};
use crmflow_bullhorn::wire::{TokenResponse, INVALID_REST_TOKEN_KEY};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn codes_and_refresh_tokens_are_single_use() {
    let sim = start(|_| {}).await;
    let http = Client::new();
    let c = sim.credentials();
    let code = auth_code(&sim, &http).await;
    assert!(code.contains(':'), "code has the n:uuid form: {code}");

    let first = exchange(&sim, &http, &code).await;
    assert_eq!(first.status(), StatusCode::OK);
    let tok: TokenResponse = first.json().await.expect("token");
    assert_eq!(tok.expires_in, 600);
    assert_eq!(tok.token_type, "Bearer");

    let again = exchange(&sim, &http, &code).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let e: Value = again.json().await.expect("error json");
    assert_eq!(e["error"], "invalid_grant");

    // Refresh through a form body this time: a new pair, and the old refresh token is spent.
    let refresh = |rt: String| {
        let http = http.clone();
        let c = c.clone();
        let url = format!("{}/token", sim.oauth_url());
        async move {
            http.post(url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", rt.as_str()),
                    ("client_id", c.client_id.as_str()),
                    ("client_secret", c.client_secret.as_str()),
                ])
                .send()
                .await
                .expect("refresh")
        }
    };
    let r1 = refresh(tok.refresh_token.clone()).await;
    assert_eq!(r1.status(), StatusCode::OK);
    let tok2: TokenResponse = r1.json().await.expect("refreshed");
    assert_ne!(tok2.refresh_token, tok.refresh_token);
    let r2 = refresh(tok.refresh_token.clone()).await;
    assert_eq!(r2.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r2.json::<Value>().await.expect("json")["error"],
        "invalid_grant"
    );

    // Access tokens open one session each.
    assert_eq!(
        rest_login(&sim, &http, &tok2.access_token).await.status(),
        StatusCode::OK
    );
    let reused = rest_login(&sim, &http, &tok2.access_token).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let body: Value = reused.json().await.expect("json");
    assert_eq!(
        body["errorMessageKey"],
        "errors.authentication.invalidOAuthToken"
    );
    assert_eq!(body["errorCode"], 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_secret_credentials_and_client_id() {
    let sim = start(|_| {}).await;
    let http = Client::new();
    let c = sim.credentials();
    let code = auth_code(&sim, &http).await;
    let resp = http
        .post(format!("{}/token", sim.oauth_url()))
        .query(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", c.client_id.as_str()),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(
        resp.json::<Value>().await.expect("json")["error"],
        "invalid_client"
    );

    let page = http
        .post(format!("{}/authorize", sim.oauth_url()))
        .form(&[
            ("client_id", c.client_id.as_str()),
            ("response_type", "code"),
            ("action", "Login"),
            ("username", c.username.as_str()),
            ("password", "nope"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<p class=\"error\">Invalid credentials.</p>"));

    let page = http
        .get(format!("{}/authorize", sim.oauth_url()))
        .query(&[("client_id", "bogus"), ("response_type", "code")])
        .send()
        .await
        .expect("authorize");
    assert!(page
        .text()
        .await
        .expect("html")
        .contains("<title>Bullhorn OAuth Error - Invalid Client Id</title>"));
    sim.shutdown().await;
}

#[tokio::test]
async fn following_the_redirect_ends_on_a_200_page_carrying_the_code() {
    let sim = start(|_| {}).await;
    let c = sim.credentials();
    // POST like Bullhorn's SDK; reqwest follows the 302 with a GET.
    let resp = Client::new()
        .post(format!("{}/authorize", sim.oauth_url()))
        .query(&[
            ("client_id", c.client_id.as_str()),
            ("response_type", "code"),
            ("action", "Login"),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::OK);
    let code = resp
        .url()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("final URL carries the code");
    assert_eq!(
        exchange(&sim, &Client::new(), &code).await.status(),
        StatusCode::OK
    );

    // With a redirect_uri the Location points there, with client_id and state.
    let resp = no_redirect()
        .get(format!("{}/authorize", sim.oauth_url()))
        .query(&[
            ("client_id", c.client_id.as_str()),
            ("response_type", "code"),
            ("action", "Login"),
            ("username", c.username.as_str()),
            ("password", c.password.as_str()),
            ("redirect_uri", "http://www.bullhorn.com"),
            ("state", "s1"),
        ])
        .send()
        .await
        .expect("authorize");
    let loc = resp.headers()["location"].to_str().expect("ascii");
    assert!(loc.starts_with("http://www.bullhorn.com?code="), "{loc}");
    assert!(
        loc.contains("&state=s1") && loc.contains("client_id="),
        "{loc}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn missing_token_is_412_and_bad_or_expired_token_is_401() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    let http = Client::new();
    let ping = format!("{}ping", s.rest_url);

    let none = http.get(&ping).send().await.expect("ping");
    assert_eq!(none.status(), StatusCode::PRECONDITION_FAILED);

    let bad = http
        .get(&ping)
        .query(&[("BhRestToken", "nope")])
        .send()
        .await
        .expect("ping");
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.text().await.expect("body"),
        r#"{"errorMessage":"Bad 'BhRestToken' or timed-out.","errorMessageKey":"errors.authentication.invalidRestToken","errorCode":401}"#
    );

    // Query parameter, both header spellings and the cookie all carry the session.
    let by_query = http
        .get(&ping)
        .query(&[("BhRestToken", s.token.as_str())])
        .send()
        .await
        .expect("q");
    assert_eq!(by_query.status(), StatusCode::OK);
    let expires = by_query.json::<Value>().await.expect("json")["sessionExpires"].as_i64();
    assert!(expires.is_some_and(|e| e > 0));
    for h in ["BhRestToken", "BHRestToken"] {
        let r = http.get(&ping).header(h, &s.token).send().await.expect("h");
        assert_eq!(r.status(), StatusCode::OK, "{h}");
    }
    let r = http
        .get(&ping)
        .header("Cookie", format!("BhRestToken={}", s.token))
        .send()
        .await
        .expect("cookie");
    assert_eq!(r.status(), StatusCode::OK);

    // Expiring all sessions (fault control) turns the same token into the 401.
    let expired: Value = http
        .post(format!("{}/sim/expire-sessions", sim.base_url()))
        .send()
        .await
        .expect("expire")
        .json()
        .await
        .expect("json");
    assert_eq!(expired["expired"], 1);
    let r = http
        .get(&ping)
        .header("BhRestToken", &s.token)
        .send()
        .await
        .expect("ping");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.expect("json")["errorMessageKey"],
        INVALID_REST_TOKEN_KEY
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn login_sets_cookie_and_logout_ends_the_session() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    assert_eq!(
        s.rest_url,
        format!("{}/rest-services/{}/", sim.base_url(), sim.corp_token())
    );
    let (st, v) = s.get("logout", &[]).await;
    assert_eq!((st, v), (StatusCode::OK, json!({"logout": "OK"})));
    let (st, _) = s.get("ping", &[]).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    sim.shutdown().await;
}

#[tokio::test]
async fn short_ttl_sessions_time_out() {
    let sim = start(|_| {}).await;
    let http = Client::new();
    let code = auth_code(&sim, &http).await;
    let tok: TokenResponse = exchange(&sim, &http, &code)
        .await
        .json()
        .await
        .expect("token");
    let resp = http
        .get(format!("{}/login", sim.rest_services_url()))
        .query(&[
            ("version", "2.0"),
            ("access_token", tok.access_token.as_str()),
            ("ttl", "1"),
        ])
        .send()
        .await
        .expect("login");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap_or("").to_string());
    assert!(cookie.is_some_and(|c| c.starts_with("BhRestToken=")));
    let v: Value = resp.json().await.expect("json");
    let token = v["BhRestToken"].as_str().expect("token").to_string();
    let ping: Value = http
        .get(format!("{}ping", v["restUrl"].as_str().expect("restUrl")))
        .query(&[("BhRestToken", token.as_str())])
        .send()
        .await
        .expect("ping")
        .json()
        .await
        .expect("json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let left = ping["sessionExpires"].as_i64().expect("expiry") - now;
    assert!(
        (50_000..=61_000).contains(&left),
        "ttl=1 gives ~60 s, got {left} ms"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn wrong_data_center_answers_307() {
    let sim = start(|_| {}).await;
    let url = format!(
        "{}/loginInfo?username=crmflow",
        sim.wrong_dc_rest_services_url()
    );
    let resp = no_redirect().get(&url).send().await.expect("loginInfo");
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        resp.headers()["location"].to_str().expect("ascii"),
        format!("{}/loginInfo?username=crmflow", sim.rest_services_url())
    );
    let info: Value = Client::new()
        .get(&url)
        .send()
        .await
        .expect("follow")
        .json()
        .await
        .expect("json");
    assert_eq!(info["oauthUrl"], format!("{}/oauth", sim.base_url()));
    assert_eq!(info["restUrl"], sim.rest_services_url());
    sim.shutdown().await;
}
