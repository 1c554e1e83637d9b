//! Authentication: sessions (ids shaped like Salesforce's `00D..!AQ..`, expiring, optionally sliding), the
//! OAuth token endpoint (client credentials by form or HTTP Basic; JWT bearer with an RS256 assertion
//! checked against the configured public key and Salesforce's claim rules) and the SOAP `login` call of the
//! partner API (what simple-salesforce's username/password login sends).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::distr::Alphanumeric;
use rand::Rng;
use serde_json::json;

use super::Shared;
use crate::client::auth::JWT_BEARER_GRANT;

/// Live sessions.
#[derive(Debug, Default)]
pub struct AuthState {
    sessions: HashMap<String, Instant>,
    /// Sessions issued so far.
    pub issued: u64,
    /// Requests refused for a bad or expired session.
    pub rejected: u64,
}

impl AuthState {
    /// Issues a session for `org15`, valid `ttl`.
    pub fn issue(&mut self, org15: &str, ttl: Duration) -> String {
        let tail: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(96)
            .map(char::from)
            .collect();
        let token = format!("{org15}!AQ{tail}");
        self.sessions.insert(token.clone(), Instant::now() + ttl);
        self.issued += 1;
        token
    }

    /// Whether `token` is live (sliding: extends it by `ttl`).
    pub fn check(&mut self, token: &str, ttl: Duration, sliding: bool) -> bool {
        let now = Instant::now();
        match self.sessions.get_mut(token) {
            Some(exp) if *exp > now => {
                if sliding {
                    *exp = now + ttl;
                }
                true
            }
            Some(_) => {
                self.sessions.remove(token);
                self.rejected += 1;
                false
            }
            None => {
                self.rejected += 1;
                false
            }
        }
    }

    /// Ends every session (what an expired-sessions fault does).
    pub fn expire_all(&mut self) -> usize {
        let n = self.sessions.len();
        self.sessions.clear();
        n
    }

    /// Sessions alive now.
    pub fn live(&self) -> usize {
        let now = Instant::now();
        self.sessions.values().filter(|e| **e > now).count()
    }
}

/// The bearer token of a REST request (`Authorization: Bearer X`, or the older `OAuth X`).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("OAuth "))
        .map(str::trim)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn token_answer(s: &Shared, signed: bool) -> Response {
    let ttl = Duration::from_secs(s.config.session_ttl_secs);
    let token = s.auth.lock().issue(&s.org_id[..15], ttl);
    let issued_at = chrono::Utc::now().timestamp_millis().to_string();
    let mut body = json!({
        "access_token": token,
        "scope": "api",
        "instance_url": s.base_url,
        "id": format!("{}/id/{}/{}", s.base_url, s.org_id, s.user_id),
        "token_type": "Bearer",
    });
    if signed {
        body["issued_at"] = json!(issued_at);
        let sig: [u8; 32] = rand::rng().random();
        body["signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// `POST /services/oauth2/token`.
pub async fn token(
    State(s): State<Shared>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let (id, secret) = match basic(&headers) {
                Some(pair) => pair,
                None => (
                    form.get("client_id").cloned().unwrap_or_default(),
                    form.get("client_secret").cloned().unwrap_or_default(),
                ),
            };
            if id != s.config.client_id {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client_id",
                    "client identifier invalid",
                );
            }
            if secret != s.config.client_secret {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    "invalid client credentials",
                );
            }
            token_answer(&s, true)
        }
        Some(JWT_BEARER_GRANT) => {
            let Some(assertion) = form.get("assertion") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "assertion required",
                );
            };
            match verify_jwt(&s, assertion) {
                Ok(()) => token_answer(&s, false),
                Err((code, desc)) => oauth_error(StatusCode::BAD_REQUEST, code, &desc),
            }
        }
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant type not supported: {other}"),
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type required",
        ),
    }
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let b = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (a, b) = text.split_once(':')?;
    Some((a.to_string(), b.to_string()))
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: i64,
}

/// Salesforce's rules: RS256 signed by the connected app's certificate, `iss` = consumer key, `sub` = a user
/// who may use the app, `aud` = the login host, `exp` no more than 3 minutes ahead (and not past).
fn verify_jwt(s: &Shared, assertion: &str) -> Result<(), (&'static str, String)> {
    let Some(pem) = &s.config.jwt_public_key_pem else {
        return Err((
            "invalid_grant",
            "no certificate is configured for this connected app".into(),
        ));
    };
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| ("invalid_grant", format!("bad configured key: {e}")))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[
        "https://login.salesforce.com",
        "https://test.salesforce.com",
        s.base_url.as_str(),
    ]);
    v.leeway = 5;
    let data = jsonwebtoken::decode::<Claims>(assertion, &key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidAudience => ("invalid_grant", "audience is invalid".to_string()),
            ErrorKind::ExpiredSignature => {
                ("invalid_grant", "expired authorization code".to_string())
            }
            _ => ("invalid_grant", "invalid assertion".to_string()),
        }
    })?;
    let c = data.claims;
    if c.iss != s.config.client_id {
        return Err(("invalid_client_id", "client identifier invalid".into()));
    }
    if c.sub != s.config.username {
        return Err(("invalid_grant", "user hasn't approved this consumer".into()));
    }
    let now = chrono::Utc::now().timestamp();
    if c.exp > now + 180 + 5 {
        return Err((
            "invalid_grant",
            "invalid assertion: exp too far in the future".into(),
        ));
    }
    Ok(())
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of the first element whose local name is `name` (any namespace prefix).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(pos) = xml[from..].find(name) {
        let at = from + pos;
        let before = xml[..at].chars().last();
        let after = xml[at + name.len()..].chars().next();
        let is_open = matches!(before, Some('<') | Some(':'))
            && matches!(after, Some('>'))
            && xml[..at]
                .rfind('<')
                .is_some_and(|lt| !xml[lt..at].contains('/'));
        if is_open {
            let start = at + name.len() + 1;
            let end = xml[start..].find("</")? + start;
            return Some(&xml[start..end]);
        }
        from = at + name.len();
    }
    None
}

fn soap_fault(code: &str, message: &str) -> Response {
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: {message}</faultstring><detail><sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{message}</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    );
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `POST /services/Soap/u/{version}` with a partner-API `login` envelope.
pub async fn soap_login(
    State(s): State<Shared>,
    Path(version): Path<String>,
    body: String,
) -> Response {
    let (Some(user), Some(pass)) = (element(&body, "username"), element(&body, "password")) else {
        return soap_fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    };
    let (user, pass) = (xml_unescape(user), xml_unescape(pass));
    let expected = format!("{}{}", s.config.password, s.config.security_token);
    if user != s.config.username || pass != expected {
        return soap_fault(
            "INVALID_LOGIN",
            "Invalid username, password, security token; or user locked out.",
        );
    }
    let ttl = Duration::from_secs(s.config.session_ttl_secs);
    let session = s.auth.lock().issue(&s.org_id[..15], ttl);
    let base = &s.base_url;
    let org15 = &s.org_id[..15];
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result><metadataServerUrl>{base}/services/Soap/m/{version}/{org15}</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>false</sandbox><serverUrl>{base}/services/Soap/u/{version}/{org15}</serverUrl><sessionId>{session}</sessionId><userId>{user_id}</userId><userInfo><organizationId>{org}</organizationId><organizationName>crmflow simulator</organizationName><sessionSecondsValid>{ttl}</sessionSecondsValid><userEmail>{username}</userEmail><userId>{user_id}</userId><userName>{username}</userName></userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>"#,
        user_id = s.user_id,
        org = s.org_id,
        ttl = s.config.session_ttl_secs,
        username = s.config.username,
    );
    (
        StatusCode::OK,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_prefixed_elements() {
        let xml = r#"<env:Body><n1:login xmlns:n1="urn:partner.soap.sforce.com"><n1:username>a@b.c</n1:username><n1:password>p&amp;wTOKEN</n1:password></n1:login></env:Body>"#;
        assert_eq!(element(xml, "username"), Some("a@b.c"));
        assert_eq!(
            element(xml, "password").map(xml_unescape).as_deref(),
            Some("p&wTOKEN")
        );
        assert_eq!(element("<username>x</username>", "username"), Some("x"));
        assert_eq!(element("no xml", "username"), None);
    }

    #[test]
    fn sessions_expire() {
        let mut a = AuthState::default();
        let t = a.issue("00D000000000001", Duration::from_millis(0));
        assert!(!a.check(&t, Duration::ZERO, false));
        let t = a.issue("00D000000000001", Duration::from_secs(60));
        assert!(a.check(&t, Duration::from_secs(60), true));
        assert_eq!(a.expire_all(), 1);
        assert!(!a.check(&t, Duration::from_secs(60), true));
    }
}
