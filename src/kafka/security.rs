//! Connection security: the `kafka.security_protocol`, `kafka.tls.*` and `kafka.sasl.*` keys
//! mapped onto librdkafka properties (a pure function, table-tested below).
//!
//! librdkafka is built with OpenSSL (the rdkafka crate's `ssl` feature, the system's libssl)
//! for `SSL`/`SASL_SSL`, PLAIN and SCRAM-SHA-256/512, and with libcurl (`curl`) for
//! OAUTHBEARER's OIDC method (librdkafka fetches and refreshes the token from
//! `sasl.oauthbearer.token.endpoint.url` itself). GSSAPI (Kerberos) is not built in.

use secrecy::ExposeSecret;

use crate::config::{KafkaConfig, SaslMechanism, SecurityProtocol};

/// The librdkafka properties for the connection security keys, in the order they are set.
/// `kafka.client_properties` is applied after these, so a raw property wins.
pub fn security_properties(cfg: &KafkaConfig) -> Vec<(&'static str, String)> {
    let (tls, sasl) = (&cfg.tls, &cfg.sasl);
    let tls_files = tls.ca_file.is_some() || tls.cert_file.is_some() || tls.key_file.is_some();
    let protocol = cfg.security_protocol.or(match (sasl.mechanism, tls_files) {
        (Some(_), _) => Some(SecurityProtocol::SaslSsl),
        (None, true) => Some(SecurityProtocol::Ssl),
        (None, false) => None,
    });
    let mut p: Vec<(&'static str, String)> = Vec::new();
    let path = |f: &std::path::PathBuf| f.display().to_string();
    if let Some(protocol) = protocol {
        p.push(("security.protocol", protocol.as_str().to_owned()));
    }
    if matches!(
        protocol,
        Some(SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    ) {
        if let Some(f) = &tls.ca_file {
            p.push(("ssl.ca.location", path(f)));
        }
        if let Some(f) = &tls.cert_file {
            p.push(("ssl.certificate.location", path(f)));
        }
        if let Some(f) = &tls.key_file {
            p.push(("ssl.key.location", path(f)));
        }
        if let Some(pw) = &tls.key_password {
            p.push(("ssl.key.password", pw.expose_secret().to_owned()));
        }
        p.push((
            "ssl.endpoint.identification.algorithm",
            if tls.verify_hostname { "https" } else { "none" }.to_owned(),
        ));
    }
    if matches!(
        protocol,
        Some(SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    ) {
        let mechanism = sasl.mechanism.unwrap_or(SaslMechanism::Plain);
        p.push(("sasl.mechanisms", mechanism.as_str().to_owned()));
        match mechanism {
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                if let Some(u) = &sasl.username {
                    p.push(("sasl.username", u.clone()));
                }
                if let Some(pw) = &sasl.password {
                    p.push(("sasl.password", pw.expose_secret().to_owned()));
                }
            }
            SaslMechanism::OAuthBearer => {
                let unsecured = sasl.oauthbearer_method.as_deref() == Some("unsecured-jwt");
                if unsecured {
                    p.push(("sasl.oauthbearer.method", "default".to_owned()));
                    p.push(("enable.sasl.oauthbearer.unsecure.jwt", "true".to_owned()));
                } else if sasl.oauthbearer_method.as_deref() != Some("default") {
                    p.push(("sasl.oauthbearer.method", "oidc".to_owned()));
                }
                let opt = [
                    ("sasl.oauthbearer.client.id", &sasl.oauthbearer_client_id),
                    (
                        "sasl.oauthbearer.token.endpoint.url",
                        &sasl.oauthbearer_token_endpoint_url,
                    ),
                    ("sasl.oauthbearer.scope", &sasl.oauthbearer_scope),
                    ("sasl.oauthbearer.extensions", &sasl.oauthbearer_extensions),
                    ("sasl.oauthbearer.config", &sasl.oauthbearer_config),
                ];
                for (k, v) in opt {
                    if let Some(v) = v {
                        p.push((k, v.clone()));
                    }
                }
                if let Some(s) = &sasl.oauthbearer_client_secret {
                    p.push((
                        "sasl.oauthbearer.client.secret",
                        s.expose_secret().to_owned(),
                    ));
                }
            }
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KafkaConfig, SecurityProtocol};
    use secrecy::SecretString;

    fn props(cfg: &KafkaConfig) -> std::collections::BTreeMap<&'static str, String> {
        security_properties(cfg).into_iter().collect()
    }

    #[test]
    fn plaintext_default_sets_nothing() {
        assert!(security_properties(&KafkaConfig::default()).is_empty());
    }

    #[test]
    fn scram_over_tls() {
        let mut c = KafkaConfig::default();
        c.sasl.mechanism = Some(SaslMechanism::ScramSha512);
        c.sasl.username = Some("app".into());
        c.sasl.password = Some(SecretString::from("pw"));
        c.tls.ca_file = Some("/ca.pem".into());
        let p = props(&c);
        assert_eq!(
            p["security.protocol"], "SASL_SSL",
            "inferred from the mechanism"
        );
        assert_eq!(p["sasl.mechanisms"], "SCRAM-SHA-512");
        assert_eq!(p["sasl.username"], "app");
        assert_eq!(p["sasl.password"], "pw");
        assert_eq!(p["ssl.ca.location"], "/ca.pem");
        assert_eq!(p["ssl.endpoint.identification.algorithm"], "https");
    }

    #[test]
    fn mtls_and_hostname_check_off() {
        let mut c = KafkaConfig::default();
        c.tls.cert_file = Some("/c.pem".into());
        c.tls.key_file = Some("/k.pem".into());
        c.tls.key_password = Some(SecretString::from("kp"));
        c.tls.verify_hostname = false;
        let p = props(&c);
        assert_eq!(p["security.protocol"], "SSL");
        assert_eq!(p["ssl.certificate.location"], "/c.pem");
        assert_eq!(p["ssl.key.location"], "/k.pem");
        assert_eq!(p["ssl.key.password"], "kp");
        assert_eq!(p["ssl.endpoint.identification.algorithm"], "none");
        assert!(!p.contains_key("sasl.mechanisms"));
    }

    #[test]
    fn sasl_plaintext_has_no_tls_properties() {
        let mut c = KafkaConfig {
            security_protocol: Some(SecurityProtocol::SaslPlaintext),
            ..Default::default()
        };
        c.tls.ca_file = Some("/ca.pem".into());
        c.sasl.username = Some("u".into());
        let p = props(&c);
        assert_eq!(p["security.protocol"], "SASL_PLAINTEXT");
        assert_eq!(
            p["sasl.mechanisms"], "PLAIN",
            "PLAIN when no mechanism is named"
        );
        assert!(!p.contains_key("ssl.ca.location"));
    }

    #[test]
    fn oauthbearer_oidc_and_unsecured() {
        let mut c = KafkaConfig::default();
        c.sasl.mechanism = Some(SaslMechanism::OAuthBearer);
        c.sasl.oauthbearer_client_id = Some("cid".into());
        c.sasl.oauthbearer_client_secret = Some(SecretString::from("cs"));
        c.sasl.oauthbearer_token_endpoint_url = Some("https://idp/token".into());
        c.sasl.oauthbearer_scope = Some("kafka".into());
        let p = props(&c);
        assert_eq!(p["sasl.mechanisms"], "OAUTHBEARER");
        assert_eq!(p["sasl.oauthbearer.method"], "oidc");
        assert_eq!(p["sasl.oauthbearer.client.secret"], "cs");
        assert_eq!(
            p["sasl.oauthbearer.token.endpoint.url"],
            "https://idp/token"
        );
        c.sasl = Default::default();
        c.sasl.mechanism = Some(SaslMechanism::OAuthBearer);
        c.sasl.oauthbearer_method = Some("unsecured-jwt".into());
        c.sasl.oauthbearer_config = Some("principal=admin".into());
        let p = props(&c);
        assert_eq!(p["sasl.oauthbearer.method"], "default");
        assert_eq!(p["enable.sasl.oauthbearer.unsecure.jwt"], "true");
        assert_eq!(p["sasl.oauthbearer.config"], "principal=admin");
    }

    #[test]
    fn raw_client_properties_win() {
        let mut c = KafkaConfig::default();
        c.sasl.mechanism = Some(SaslMechanism::ScramSha256);
        c.sasl.username = Some("typed".into());
        c.client_properties
            .insert("sasl.username".into(), "raw".into());
        c.client_properties
            .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        let cc = super::super::client_config(&c);
        assert_eq!(cc.get("sasl.username"), Some("raw"));
        assert_eq!(cc.get("security.protocol"), Some("SASL_PLAINTEXT"));
        assert_eq!(cc.get("sasl.mechanisms"), Some("SCRAM-SHA-256"), "merged");
    }
}
