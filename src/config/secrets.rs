//! Secrets read from files (`<key>_file`, `<ENV>_FILE`): the table of secret keys and the
//! reader. See the `config` module docs for the rules.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::ConfigError;

/// Every secret key and its environment name. Each also accepts `<key>_file` and
/// `<ENV>_FILE` (see the module docs); the `_FILE` environment names are derived from here.
pub const SECRET_KEYS: &[(&str, &str)] = &[
    ("postgres.password", "DB_PASSWORD"),
    ("postgres.url", "DATABASE_URL"),
    ("bullhorn.client_secret", "BULLHORN_CLIENT_SECRET"),
    ("bullhorn.password", "BULLHORN_PASSWORD"),
    ("ml.api_key", "ML_API_KEY"),
    ("hubspot.access_token", "HUBSPOT_ACCESS_TOKEN"),
    ("hubspot.refresh_token", "HUBSPOT_REFRESH_TOKEN"),
    ("hubspot.client_secret", "HUBSPOT_OAUTH_CLIENT_SECRET"),
    ("ingress.client_secret", "HUBSPOT_CLIENT_SECRET"),
    ("salesforce.client_secret", "SALESFORCE_CLIENT_SECRET"),
    ("salesforce.access_token", "SALESFORCE_ACCESS_TOKEN"),
    ("kafka.sasl.password", "KAFKA_SASL_PASSWORD"),
    ("kafka.tls.key_password", "KAFKA_SSL_KEY_PASSWORD"),
    (
        "kafka.sasl.oauthbearer_client_secret",
        "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
    ),
];

/// Reads one secret file: content with one trailing newline trimmed. The error names `key`
/// and the file, never the content.
pub fn read_secret_file(key: &str, path: &Path) -> Result<SecretString, ConfigError> {
    let mut s = std::fs::read_to_string(path).map_err(|e| ConfigError::SecretFile {
        key: format!("{key}_file"),
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(SecretString::from(s))
}

/// `slot` from `file` when a file is given.
pub(super) fn secret_from_file(
    key: &str,
    slot: &mut Option<SecretString>,
    file: &Option<PathBuf>,
) -> Result<(), ConfigError> {
    if let Some(path) = file {
        *slot = Some(read_secret_file(key, path)?);
    }
    Ok(())
}

/// The configuration key a secret's environment variable sets (its alias, or
/// `CRMFLOW_<SECTION>__<KEY>`), if `name` is one.
fn secret_key_of_env(name: &str) -> Option<&'static str> {
    let is_secret = |key: &str| SECRET_KEYS.iter().find(|(k, _)| *k == key).map(|(k, _)| *k);
    if let Some((_, key)) = super::ENV_ALIASES
        .iter()
        .find(|(env, _)| name.eq_ignore_ascii_case(env))
    {
        return is_secret(key);
    }
    let rest = name.strip_prefix("CRMFLOW_")?;
    is_secret(&rest.to_ascii_lowercase().replace("__", "."))
}

/// Whether `name` is a secret's environment variable (read only by [`RawSecretEnv`], never
/// parsed, so no parser message or panic can quote it).
pub(super) fn is_secret_env(name: &str) -> bool {
    secret_key_of_env(name).is_some()
}

/// Refuses environment values figment 0.10 would panic on: a quoted value holding a backslash
/// escape after a non-ASCII character (`DB_HOST="é\n"`) — its unescaper slices the string at a
/// character index as if it were a byte index. Secrets are exempt: they are never parsed.
pub(super) fn check_env_values() -> Result<(), ConfigError> {
    for (k, v) in std::env::vars_os() {
        let (Some(name), Some(value)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        let ours = super::ENV_ALIASES
            .iter()
            .any(|(env, _)| name.eq_ignore_ascii_case(env))
            || (name.starts_with("CRMFLOW_") && name.contains("__"));
        let t = value.trim();
        if ours && !is_secret_env(name) && t.starts_with('"') && t.contains('\\') && !t.is_ascii() {
            return Err(ConfigError::Invalid(format!(
                "environment variable {name}: a quoted value with backslash escapes must be ASCII \
                 (write the characters themselves, unquoted)"
            )));
        }
    }
    Ok(())
}

/// Deep-merges `from` into `into` (`from` wins).
fn merge_into(into: &mut figment::value::Dict, from: figment::value::Dict) {
    use figment::value::Value;
    for (k, v) in from {
        match (into.get_mut(&k), v) {
            (Some(Value::Dict(_, a)), Value::Dict(_, b)) => merge_into(a, b),
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
}

/// Secrets from the environment exactly as given.
///
/// figment's `Env` reads every value like a TOML scalar, so `DB_PASSWORD=0123456789` became the
/// integer 123456789: refused with "found unsigned int `123456789`, expected a string" — a
/// secret in an error message — and a password of digits could not be configured at all. This
/// layer, merged over `Env`, sets each secret's key to the variable's raw text.
pub(super) struct RawSecretEnv;

impl figment::Provider for RawSecretEnv {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        // Aliases first, then CRMFLOW_ names, so the latter win as they do in `Env`.
        let mut vars: Vec<(bool, &'static str, String)> = std::env::vars_os()
            .filter_map(|(k, v)| {
                let name = k.to_str()?;
                let key = secret_key_of_env(name)?;
                Some((name.starts_with("CRMFLOW_"), key, v.into_string().ok()?))
            })
            .collect();
        vars.sort_by_key(|(generic, _, _)| *generic);
        for (_, key, value) in vars {
            let nested = figment::util::nest(key, figment::value::Value::from(value));
            if let Some(d) = nested.into_dict() {
                merge_into(&mut dict, d);
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use crate::config::Config;
    use figment::Jail;
    use secrecy::ExposeSecret;

    #[test]
    fn secrets_from_files_env_and_config_keys_trim_one_newline() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("db.pw", "db-secret\n")?;
            jail.create_file("kafka.pw", "kafka-secret\r\n")?;
            jail.create_file("bh.secret", "bh-secret\n\n")?;
            jail.create_file("ml.key", "ml-key")?;
            jail.create_file(
                "crmflow.toml",
                "[bullhorn]\nclient_secret = \"plain\"\nclient_secret_file = \"bh.secret\"\n",
            )?;
            jail.set_env("DB_PASSWORD", "ignored-when-a-file-is-given");
            jail.set_env("DB_PASSWORD_FILE", "db.pw");
            jail.set_env("KAFKA_SASL_PASSWORD_FILE", "kafka.pw");
            jail.set_env("CRMFLOW_ML__API_KEY_FILE", "ml.key");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.postgres.password.expose_secret(), "db-secret");
            let kafka = c.kafka.sasl.password.as_ref().unwrap();
            assert_eq!(kafka.expose_secret(), "kafka-secret");
            let bh = c.bullhorn.client_secret.as_ref().unwrap();
            assert_eq!(
                bh.expose_secret(),
                "bh-secret\n",
                "only one newline is trimmed"
            );
            assert_eq!(c.ml.api_key.as_ref().unwrap().expose_secret(), "ml-key");
            let shown = format!("{c:?}\n{}", c.redacted_toml());
            assert!(!shown.contains("-secret"), "{shown}");
            Ok(())
        });
    }

    #[test]
    fn missing_secret_file_is_one_line_naming_key_and_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("BULLHORN_PASSWORD_FILE", "/run/secrets/nope");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("bullhorn.password_file"), "{err}");
            assert!(err.contains("/run/secrets/nope"), "{err}");
            assert!(!err.contains('\n'), "{err}");
            Ok(())
        });
    }

    #[test]
    fn crm_secrets_come_from_files_too() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("hs.token", "pat-from-file\n")?;
            jail.create_file("hs.app", "app-secret-from-file\n")?;
            jail.create_file("sf.secret", "sf-secret-from-file\n")?;
            jail.set_env("HUBSPOT_ACCESS_TOKEN_FILE", "hs.token");
            jail.set_env("HUBSPOT_CLIENT_SECRET_FILE", "hs.app");
            jail.set_env("SALESFORCE_CLIENT_SECRET_FILE", "sf.secret");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            let h = c
                .hubspot
                .as_ref()
                .expect("a HubSpot secret file turns HubSpot on");
            let token = h.access_token.as_ref().unwrap();
            assert_eq!(token.expose_secret(), "pat-from-file");
            let app = c.ingress.client_secret.as_ref().unwrap();
            assert_eq!(app.expose_secret(), "app-secret-from-file");
            let sf = c.salesforce.client_secret.as_ref().unwrap();
            assert_eq!(sf.expose_secret(), "sf-secret-from-file");
            let shown = format!("{c:?}\n{}", c.redacted_toml());
            assert!(!shown.contains("from-file"), "{shown}");
            Ok(())
        });
    }
}
