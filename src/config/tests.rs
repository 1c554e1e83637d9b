//! Tests of loading: layers, aliases, env names, redaction and one-line errors.

use super::*;
use figment::Jail;

#[test]
fn old_service_env_names_override_file_and_defaults() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file(
            "crmflow.toml",
            "[postgres]\nhost = \"db.internal\"\nport = 6000\n",
        )?;
        jail.set_env("DB_PORT", "6543");
        jail.set_env("DB_PASSWORD", "s3cret");
        jail.set_env("BULLHORN_CLIENT_ID", "cid");
        jail.set_env("ML_SERVICE_URL", "http://ml:80");
        jail.set_env("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092");
        jail.set_env("CRMFLOW_SINK__BATCH_SIZE", "123");
        jail.set_env("CRMFLOW_STATE_DIR", "/tmp/whatever");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.postgres.host, "db.internal");
        assert_eq!(c.postgres.port, 6543);
        assert_eq!(c.postgres.password.expose_secret(), "s3cret");
        assert_eq!(c.bullhorn.client_id.as_deref(), Some("cid"));
        assert_eq!(c.ml.url, "http://ml:80");
        assert_eq!(c.kafka.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(c.sink.batch_size, 123);
        Ok(())
    });
}

#[test]
fn secrets_never_print() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("DB_PASSWORD", "hunter2-db");
        jail.set_env("BULLHORN_CLIENT_SECRET", "hunter2-client");
        jail.set_env("BULLHORN_PASSWORD", "hunter2-user");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        let shown = format!("{c:?}\n{}", c.redacted_toml());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(c.redacted_toml().contains("[redacted]"));
        jail.set_env("BULLHORN_CLIENT_ID", "x");
        jail.set_env("BULLHORN_USERNAME", "u");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        let creds = c.bullhorn.credentials().map_err(|e| e.to_string())?;
        assert!(!format!("{creds:?}").contains("hunter2"));
        Ok(())
    });
}

#[test]
fn bad_value_names_key_and_source_on_one_line() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // Nothing set: the defaults, secrets included, as they are (not as printed).
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.postgres.password.expose_secret(), "crmflow");
        assert_eq!(c.postgres.port, 5432);
        assert_eq!(c.sink.batch_size, Config::default().sink.batch_size);
        jail.set_env("DB_PORT", "not-a-port");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("postgres.port"), "{err}");
        assert!(err.contains("DB_PORT"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        Ok(())
    });
}

#[test]
fn unknown_key_in_file_is_rejected_with_its_file() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("crmflow.toml", "[sink]\nbatch_sise = 10\n")?;
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("batch_sise"), "{err}");
        assert!(err.contains("crmflow.toml"), "{err}");
        Ok(())
    });
}

#[test]
fn hubspot_is_on_with_its_env_names_and_its_secrets_never_print() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert!(c.hubspot.is_none(), "off unless configured");
        jail.set_env("HUBSPOT_ACCESS_TOKEN", "pat-hunter2");
        jail.set_env("HUBSPOT_CLIENT_SECRET", "hunter2-app");
        jail.set_env("CRMFLOW_HUBSPOT__MODE", "both");
        jail.set_env("CRMFLOW_INGRESS_PUBLIC_URL", "https://hooks.example/hs");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        let h = c.hubspot.clone().expect("on");
        assert_eq!(h.access_token.unwrap().expose_secret(), "pat-hunter2");
        assert_eq!(h.mode, HubspotMode::Both);
        assert_eq!(h.objects.len(), 2, "default objects");
        assert_eq!(
            c.ingress.client_secret.as_ref().unwrap().expose_secret(),
            "hunter2-app"
        );
        assert_eq!(c.ingress.public_url, "https://hooks.example/hs");
        let shown = format!("{c:?}\n{}", c.redacted_toml());
        assert!(!shown.contains("hunter2"), "{shown}");
        jail.set_env("CRMFLOW_HUBSPOT__MODE", "push");
        let err = Config::load(None).unwrap_err().to_string();
        assert!(err.contains("hubspot.mode"), "{err}");
        Ok(())
    });
}

#[test]
fn missing_credentials_name_the_env_var() {
    let c = Config::default();
    let err = c.bullhorn.credentials().unwrap_err().to_string();
    assert!(err.contains("BULLHORN_CLIENT_ID"), "{err}");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let err = Config::load(Some(Path::new("/nonexistent/crmflow.toml")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/crmflow.toml"));
}
