//! Bullhorn's login flow, one function per step: `loginInfo` discovery, `authorize` (the code comes back in
//! the `Location` of a 302, which must not be followed), the `token` grants (authorization code and the
//! single-use refresh token) and the REST `login` that opens a session.
//!
//! Every secret goes in a form body, never in a URL: URLs end up in error messages and access logs. A 307/308
//! to another data center is followed (the body is resent), as Bullhorn requires; `authorize` uses a client
//! without automatic redirects and follows 307/308 by hand so that it can stop at the 302 carrying the code.

use std::time::Duration;

use reqwest::{header, Client, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::config::Credentials;
use super::error::{AuthError, ClientError};
use crate::wire::{LoginInfo, LoginResponse, OAuthError, TokenResponse, INVALID_OAUTH_TOKEN_KEY};

/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 5;

/// The two HTTP clients of the flow.
#[derive(Debug, Clone)]
pub struct AuthHttp {
    /// Follows 307/308 only (data-center moves); used for `loginInfo`, `token` and `login`.
    pub follow: Client,
    /// Follows nothing; used for `authorize`.
    pub no_redirect: Client,
}

impl AuthHttp {
    /// Builds both clients with the given timeout.
    pub fn new(timeout: Duration) -> Result<Self, ClientError> {
        let build = |policy| {
            Client::builder()
                .redirect(policy)
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| ClientError::Config(e.without_url().to_string()))
        };
        Ok(Self {
            follow: build(follow_307_308())?,
            no_redirect: build(reqwest::redirect::Policy::none())?,
        })
    }
}

/// Redirect policy that follows only the data-center moves (307/308), a few hops at most.
pub fn follow_307_308() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let moved = matches!(
            attempt.status(),
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
        );
        if moved && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The tokens of one grant.
pub struct Tokens {
    /// Used once, for `/login`.
    pub access_token: SecretString,
    /// Single-use: the next refresh must use the one returned with it.
    pub refresh_token: SecretString,
    /// Access-token lifetime.
    pub expires_in: Duration,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// An open REST session.
pub struct LoggedIn {
    /// `BhRestToken`.
    pub bh_rest_token: SecretString,
    /// Session base URL, ending in `/`.
    pub rest_url: String,
}

/// Reads a success body, or classifies the failure (shared with `api.rs`).
pub(crate) async fn read_body(
    endpoint: &str,
    resp: reqwest::Response,
) -> Result<Vec<u8>, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return resp
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::from_reqwest(endpoint, e));
    }
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The body of an error is only for the message; a broken one must not hide the status.
    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    let envelope = serde_json::from_slice::<crate::wire::ErrorEnvelope>(&body).ok();
    let message = match &envelope {
        Some(e) => e.error_message.clone(),
        None => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    };
    let endpoint = endpoint.to_string();
    Err(match status.as_u16() {
        401 => ClientError::InvalidSession { endpoint },
        429 => ClientError::RateLimited {
            endpoint,
            retry_after,
        },
        s @ 500..=599 => ClientError::Server {
            endpoint,
            status: s,
            message,
        },
        s => ClientError::Api {
            endpoint,
            status: s,
            key: envelope.and_then(|e| e.error_message_key),
            message,
        },
    })
}

pub(crate) fn decode<T: DeserializeOwned>(endpoint: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        endpoint: endpoint.to_string(),
        message: e.to_string(),
    })
}

/// `GET {discovery}/loginInfo?username=`: where this user's OAuth and REST services live.
pub async fn login_info(
    http: &AuthHttp,
    discovery_url: &str,
    username: &str,
) -> Result<LoginInfo, ClientError> {
    const EP: &str = "loginInfo";
    let url = format!("{}/loginInfo", discovery_url.trim_end_matches('/'));
    let resp = http
        .follow
        .get(url)
        .query(&[("username", username)])
        .send()
        .await
        .map_err(|e| ClientError::from_reqwest(EP, e))?;
    decode(EP, &read_body(EP, resp).await?)
}

/// `POST {oauthUrl}/authorize`: logs the API user in and returns the authorization code, URL-decoded from
/// the `Location` of the 302.
pub async fn authorize(
    http: &AuthHttp,
    oauth_url: &str,
    creds: &Credentials,
) -> Result<SecretString, ClientError> {
    const EP: &str = "oauth/authorize";
    let mut url = format!("{}/authorize", oauth_url.trim_end_matches('/'));
    let form = [
        ("client_id", creds.client_id.as_str()),
        ("response_type", "code"),
        ("action", "Login"),
        ("username", creds.username.as_str()),
        ("password", creds.password.expose_secret()),
    ];
    for _ in 0..=MAX_REDIRECTS {
        let resp = http
            .no_redirect
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(EP, e))?;
        let status = resp.status();
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (status, location) {
            (StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT, Some(loc)) => {
                url = resolve(&url, &loc)?;
            }
            (s, Some(loc)) if s.is_redirection() => return code_from_location(&url, &loc),
            (StatusCode::OK, _) => {
                let page = resp.text().await.unwrap_or_default();
                return Err(login_page_error(&page).into());
            }
            _ => {
                read_body(EP, resp).await?;
                return Err(AuthError::Unexpected(format!(
                    "authorize answered {status} without a code"
                ))
                .into());
            }
        }
    }
    Err(AuthError::Unexpected("too many redirects at authorize".into()).into())
}

fn resolve(base: &str, location: &str) -> Result<String, ClientError> {
    url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map(String::from)
        .map_err(|e| AuthError::Unexpected(format!("bad redirect location: {e}")).into())
}

/// The `code` parameter of a redirect target, URL-decoded (Bullhorn codes look like `n:uuid`, sent as `n%3Auuid`).
pub fn code_from_location(base: &str, location: &str) -> Result<SecretString, ClientError> {
    let url = url::Url::parse(base)
        .and_then(|b| b.join(location))
        .map_err(|e| AuthError::Unexpected(format!("bad redirect location: {e}")))?;
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| SecretString::from(v.into_owned()))
        .filter(|c| !c.expose_secret().is_empty())
        .ok_or_else(|| AuthError::Unexpected("authorize redirect carries no code".into()).into())
}

/// What a 200 from `authorize` means: the login page again, with an error.
fn login_page_error(page: &str) -> AuthError {
    if page.contains("Invalid Client Id") {
        AuthError::InvalidClient
    } else if page.contains("Invalid credentials") {
        AuthError::InvalidCredentials
    } else {
        AuthError::Unexpected(
            "authorize answered a page instead of a redirect (terms of service not yet accepted?)"
                .into(),
        )
    }
}

/// `POST {oauthUrl}/token` with `grant_type=authorization_code`.
pub async fn exchange_code(
    http: &AuthHttp,
    oauth_url: &str,
    creds: &Credentials,
    code: &SecretString,
) -> Result<Tokens, ClientError> {
    token(
        http,
        oauth_url,
        creds,
        &[
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
        ],
    )
    .await
}

/// `POST {oauthUrl}/token` with `grant_type=refresh_token`. The refresh token is single-use: the caller
/// must keep the one returned.
pub async fn refresh(
    http: &AuthHttp,
    oauth_url: &str,
    creds: &Credentials,
    refresh_token: &SecretString,
) -> Result<Tokens, ClientError> {
    token(
        http,
        oauth_url,
        creds,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ],
    )
    .await
}

async fn token(
    http: &AuthHttp,
    oauth_url: &str,
    creds: &Credentials,
    grant: &[(&str, &str)],
) -> Result<Tokens, ClientError> {
    const EP: &str = "oauth/token";
    let mut form: Vec<(&str, &str)> = grant.to_vec();
    form.push(("client_id", &creds.client_id));
    form.push(("client_secret", creds.client_secret.expose_secret()));
    let resp = http
        .follow
        .post(format!("{}/token", oauth_url.trim_end_matches('/')))
        .form(&form)
        .send()
        .await
        .map_err(|e| ClientError::from_reqwest(EP, e))?;
    let status = resp.status();
    if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let err = serde_json::from_slice::<OAuthError>(&body).map_err(|_| ClientError::Api {
            endpoint: EP.into(),
            status: status.as_u16(),
            key: None,
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        })?;
        let detail = err.error_description.unwrap_or_default();
        return Err(match err.error.as_str() {
            "invalid_grant" => AuthError::InvalidGrant(detail),
            "invalid_client" => AuthError::InvalidClient,
            other => AuthError::Unexpected(format!("{other}: {detail}")),
        }
        .into());
    }
    let t: TokenResponse = decode(EP, &read_body(EP, resp).await?)?;
    Ok(Tokens {
        access_token: t.access_token.into(),
        refresh_token: t.refresh_token.into(),
        expires_in: Duration::from_secs(t.expires_in),
    })
}

/// `POST {restUrl}/login`: opens a REST session with a fresh access token (treated as single-use).
pub async fn login(
    http: &AuthHttp,
    rest_url: &str,
    access_token: &SecretString,
    ttl_minutes: u32,
) -> Result<LoggedIn, ClientError> {
    const EP: &str = "login";
    let ttl = ttl_minutes.to_string();
    let resp = http
        .follow
        .post(format!("{}/login", rest_url.trim_end_matches('/')))
        .form(&[
            ("version", "*"),
            ("access_token", access_token.expose_secret()),
            ("ttl", ttl.as_str()),
        ])
        .send()
        .await
        .map_err(|e| ClientError::from_reqwest(EP, e))?;
    let body = match read_body(EP, resp).await {
        Err(ClientError::Api { key: Some(k), .. }) if k == INVALID_OAUTH_TOKEN_KEY => {
            return Err(AuthError::InvalidAccessToken.into())
        }
        other => other?,
    };
    let r: LoginResponse = decode(EP, &body)?;
    let mut rest_url = r.rest_url;
    if !rest_url.ends_with('/') {
        rest_url.push('/');
    }
    Ok(LoggedIn {
        bh_rest_token: r.bh_rest_token.into(),
        rest_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_is_url_decoded_from_the_location() {
        let c = code_from_location(
            "https://auth.example/oauth/authorize",
            "http://www.bullhorn.com?code=22%3A4b2c-9f&client_id=x&state=s",
        )
        .expect("code");
        assert_eq!(c.expose_secret(), "22:4b2c-9f");
        let relative = code_from_location(
            "https://auth.example/oauth/authorize",
            "/landing?code=1%3Aa",
        )
        .expect("relative");
        assert_eq!(relative.expose_secret(), "1:a");
        assert!(code_from_location("https://a/b", "https://a/c?state=1").is_err());
    }

    #[test]
    fn login_pages_map_to_errors() {
        assert_eq!(
            login_page_error("<p class=\"error\">Invalid credentials.</p>"),
            AuthError::InvalidCredentials
        );
        assert_eq!(
            login_page_error("<title>Bullhorn OAuth Error - Invalid Client Id</title>"),
            AuthError::InvalidClient
        );
        assert!(matches!(
            login_page_error("<html>consent</html>"),
            AuthError::Unexpected(_)
        ));
    }

    #[test]
    fn tokens_debug_hides_secrets() {
        let t = Tokens {
            access_token: "5:access-secret".to_string().into(),
            refresh_token: "5:refresh-secret".to_string().into(),
            expires_in: Duration::from_secs(600),
        };
        let s = format!("{t:?}");
        assert!(!s.contains("secret"), "{s}");
    }
}
