//! Obtaining a session: the OAuth 2.0 token endpoint (`/services/oauth2/token`) with client credentials or
//! a JWT bearer assertion, or a session id given in the configuration.
//!
//! Salesforce returns no refresh token for these flows and no expiry: a session is used until a call answers
//! 401 `INVALID_SESSION_ID`, then the flow runs again.

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use super::config::{AuthConfig, ClientConfig};
use super::error::{AuthError, ClientError};
use crate::wire::{OAuthError, TokenResponse};

/// Grant type of the JWT bearer flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A live session.
#[derive(Clone)]
pub struct Session {
    /// `Authorization: Bearer` value.
    pub access_token: SecretString,
    /// Where REST calls go.
    pub instance_url: Url,
    /// The org (tenant) id, 15 or 18 characters, when known (from the identity URL or the token's prefix).
    pub org_id: Option<String>,
    /// Counts sessions obtained by this client (1 for the first).
    pub generation: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"[REDACTED]")
            .field("instance_url", &self.instance_url.as_str())
            .field("org_id", &self.org_id)
            .field("generation", &self.generation)
            .finish()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
}

/// The signed RS256 assertion: `iss` consumer key, `sub` user, `aud` login host, `exp` 3 minutes ahead.
pub fn jwt_assertion(
    client_id: &str,
    username: &str,
    audience: &str,
    private_key_pem: &SecretString,
) -> Result<String, AuthError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key_pem.expose_secret().as_bytes())
        .map_err(|e| AuthError::Jwt(e.to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = Claims {
        iss: client_id,
        sub: username,
        aud: audience,
        exp: now + 170,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| AuthError::Jwt(e.to_string()))
}

/// The org id in an identity URL `https://login.salesforce.com/id/{orgId}/{userId}`.
fn org_of_identity(id: &str) -> Option<String> {
    let mut parts = id.rsplit('/');
    let _user = parts.next()?;
    let org = parts.next()?;
    org.starts_with("00D").then(|| org.to_string())
}

/// Obtains a session with the configured flow.
pub async fn login(
    http: &reqwest::Client,
    config: &ClientConfig,
    generation: u64,
) -> Result<Session, ClientError> {
    let form: Vec<(&str, String)> = match &config.auth {
        AuthConfig::AccessToken { token } => {
            if generation > 1 {
                return Err(AuthError::TokenExpired.into());
            }
            let instance_url = config
                .instance_url
                .clone()
                .ok_or_else(|| ClientError::Config("an access token needs instance_url".into()))?;
            return Ok(Session {
                org_id: crate::ids::org_id_of_token(token.expose_secret()).map(str::to_string),
                access_token: token.clone(),
                instance_url,
                generation,
            });
        }
        AuthConfig::ClientCredentials {
            client_id,
            client_secret,
        } => vec![
            ("grant_type", "client_credentials".to_string()),
            ("client_id", client_id.clone()),
            ("client_secret", client_secret.expose_secret().to_string()),
        ],
        AuthConfig::JwtBearer {
            client_id,
            username,
            private_key_pem,
            audience,
        } => {
            let aud = audience
                .clone()
                .unwrap_or_else(|| config.login_url.origin().ascii_serialization());
            vec![
                ("grant_type", JWT_BEARER_GRANT.to_string()),
                (
                    "assertion",
                    jwt_assertion(client_id, username, &aud, private_key_pem)?,
                ),
            ]
        }
    };
    let endpoint = "oauth2/token";
    let url = config
        .login_url
        .join("/services/oauth2/token")
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let resp = http
        .post(url)
        .form(&form)
        .send()
        .await
        .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ClientError::from_reqwest(endpoint, e))?;
    if status.is_server_error() {
        return Err(ClientError::Server {
            endpoint: endpoint.into(),
            status: status.as_u16(),
            message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        });
    }
    if !status.is_success() {
        let e: OAuthError = serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
            endpoint: endpoint.into(),
            message: format!("{status}: {e}"),
        })?;
        return Err(AuthError::Refused {
            error: e.error,
            description: e.error_description,
        }
        .into());
    }
    let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
        endpoint: endpoint.into(),
        message: e.to_string(),
    })?;
    let instance_url = Url::parse(&t.instance_url).map_err(|e| ClientError::Decode {
        endpoint: endpoint.into(),
        message: format!("instance_url: {e}"),
    })?;
    let org_id =
        t.id.as_deref()
            .and_then(org_of_identity)
            .or_else(|| crate::ids::org_id_of_token(&t.access_token).map(str::to_string));
    tracing::debug!(instance_url = %instance_url, generation, "salesforce session obtained");
    Ok(Session {
        access_token: SecretString::from(t.access_token),
        instance_url: config.instance_url.clone().unwrap_or(instance_url),
        org_id,
        generation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_id_from_identity_url() {
        assert_eq!(
            org_of_identity("https://login.salesforce.com/id/00Dx0000000BV7z/005x00000012Q9P")
                .as_deref(),
            Some("00Dx0000000BV7z")
        );
        assert_eq!(org_of_identity("nonsense"), None);
    }

    #[test]
    fn session_debug_hides_token() {
        let s = Session {
            access_token: SecretString::from("00Dx!supersecret".to_string()),
            instance_url: Url::parse("https://x.my.salesforce.com").unwrap(),
            org_id: None,
            generation: 1,
        };
        assert!(!format!("{s:?}").contains("supersecret"));
    }
}
