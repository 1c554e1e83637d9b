//! Property tests of configuration loading against hostile files and environment values: any
//! TOML-ish file, any value for every environment name, any connection string. Loading answers a
//! configuration or a one-line error, never a panic; secrets, whatever they look like, load as
//! given and never appear in errors, `config check` output or `Debug`.

// figment's Jail closures return figment::Error, which is large; that is fine in tests.
#![allow(clippy::result_large_err)]

use figment::Jail;
use proptest::prelude::*;
use secrecy::ExposeSecret;

use super::*;

/// Values that trip type inference (figment reads environment values like TOML scalars).
fn tricky_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("12345678".to_owned()),
        Just("-1".to_owned()),
        Just("1.5e300".to_owned()),
        Just("true".to_owned()),
        Just("[1,2]".to_owned()),
        Just("{a=1}".to_owned()),
        Just("\"quoted\"".to_owned()),
        Just(String::new()),
        Just(" spaced ".to_owned()),
        "[a-zA-Z0-9=&%:/@?.,;#\\[\\]{}\"' -]{0,24}",
        // set_var refuses NUL and `=`-free keys only; values may hold anything else.
        any::<String>().prop_map(|s| s.replace('\0', "")),
    ]
}

/// A secret that cannot occur by chance elsewhere in the output (a distinctive prefix), in any
/// of the shapes above.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{9,12}",
        "zq[a-zA-Z0-9]{10}",
        "zq[a-zA-Z0-9 #'\"=\\[\\]{}.,:;%&-]{10}",
    ]
}

fn toml_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("[postgres]\n"),
            Just("[kafka]\n"),
            Just("[kafka.sasl]\n"),
            Just("[sink]\n"),
            Just("[hubspot]\n"),
            Just("[ingress]\n"),
            Just("[bullhorn]\n"),
            Just("[[x]]\n"),
            Just("port = 70000\n"),
            Just("port = -1\n"),
            Just("batch_size = 0\n"),
            Just("batch_size = 99999999999999999999\n"),
            Just("password = 12345\n"),
            Just("password = \"p\"\n"),
            Just("host = [\"a\"]\n"),
            Just("unknown = 1\n"),
            Just("sslmode = \"nope\"\n"),
            Just("url = \"postgres://u:p@h:99999/d\"\n"),
            Just("mode = \"webhook\"\n"),
            Just("objects = [{}]\n"),
            Just("= 1\n"),
            Just("\"\n"),
            Just("a.b.c = 1\n"),
            Just("listen = \"not an address\"\n"),
            Just("max_body_bytes = 0\n"),
            Just("linger_ms = 1e400\n"),
            Just("\u{0}\n"),
        ],
        0..10,
    )
    .prop_map(|p| p.concat())
}

const ALL_ENV: &[&str] = &[
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
    "DATABASE_URL",
    "DB_SSLMODE",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "BULLHORN_REST_URL",
    "BULLHORN_CLIENT_ID",
    "BULLHORN_PASSWORD",
    "ML_SERVICE_URL",
    "HUBSPOT_ACCESS_TOKEN",
    "HUBSPOT_CLIENT_SECRET",
    "SALESFORCE_CLIENT_SECRET",
    "CRMFLOW_INGRESS_PUBLIC_URL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "CRMFLOW_SINK__BATCH_SIZE",
    "CRMFLOW_METRICS__LISTEN",
    "CRMFLOW_KAFKA__PARTITIONS",
    "CRMFLOW_INGRESS__MAX_BODY_BYTES",
    "CRMFLOW_HUBSPOT__MODE",
    "CRMFLOW_EMBED__STORAGE",
    "CRMFLOW_TELEMETRY__SAMPLE_RATIO",
    "CRMFLOW_KAFKA__CLIENT_PROPERTIES__X",
    "CRMFLOW_BOGUS__KEY",
];

/// Everything a user can see of a configuration.
fn visible(c: &Config) -> String {
    format!("{}\n{c:?}", c.redacted_toml())
}

proptest! {
    // Each case loads a configuration in a figment Jail (a temporary directory): 64 by default,
    // PROPTEST_CASES when set.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_file_loads_or_gives_a_one_line_error(text in toml_text()) {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("crmflow.toml", &text)?;
            match Config::load(None) {
                Ok(c) => {
                    let _ = visible(&c);
                    let _ = c.pg_config();
                }
                Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
            }
            Ok(())
        });
    }

    #[test]
    fn any_environment_value_loads_or_gives_a_one_line_error(
        vars in proptest::collection::vec((proptest::sample::select(ALL_ENV), tricky_value()), 1..6),
    ) {
        Jail::expect_with(|jail| {
            jail.clear_env();
            for (k, v) in &vars {
                jail.set_env(k, v);
            }
            match Config::load(None) {
                Ok(c) => {
                    let _ = visible(&c);
                    let _ = c.pg_config();
                }
                Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
            }
            Ok(())
        });
    }

    #[test]
    fn secrets_of_any_shape_load_as_given_and_never_show(
        key in proptest::sample::select(SECRET_KEYS),
        secret in secret(),
    ) {
        let (path, env) = key;
        if path == "postgres.url" {
            return Ok(()); // a connection string, not an opaque secret (see below)
        }
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env(env, &secret);
            match Config::load(None) {
                Ok(c) => {
                    let shown = visible(&c);
                    assert!(!shown.contains(&secret), "{path} shown: {shown}");
                    assert_eq!(expose(&c, path).as_deref(), Some(secret.as_str()), "{path}");
                }
                Err(e) => panic!("{env}={secret:?} refused: {e}"),
            }
            Ok(())
        });
    }

    #[test]
    fn connection_string_errors_never_repeat_the_password(
        password in "zq[a-zA-Z0-9]{10}",
        junk in "[a-z0-9=&%:/@?. ']{0,16}",
        port in prop_oneof![Just("5432".to_owned()), "[0-9a-z]{1,7}"],
    ) {
        for s in [
            format!("postgres://u:{password}@h:{port}/d?{junk}"),
            format!("postgresql://u:{password}@{junk}"),
            format!("host=h port={port} password={password} {junk}"),
            format!("password='{password}' {junk}"),
        ] {
            match conninfo::ConnInfo::parse(&s) {
                Ok(info) => {
                    let port = format!("{:?}", info.port);
                    prop_assert!(!port.contains(&password));
                }
                Err(e) => prop_assert!(!e.contains(&password), "{e}"),
            }
        }
    }
}

/// The secret at `path`, exposed.
fn expose(c: &Config, path: &str) -> Option<String> {
    let s = |v: &Option<SecretString>| v.as_ref().map(|s| s.expose_secret().to_owned());
    match path {
        "postgres.password" => Some(c.postgres.password.expose_secret().to_owned()),
        "bullhorn.client_secret" => s(&c.bullhorn.client_secret),
        "bullhorn.password" => s(&c.bullhorn.password),
        "ml.api_key" => s(&c.ml.api_key),
        "hubspot.access_token" => c.hubspot.as_ref().and_then(|h| s(&h.access_token)),
        "hubspot.refresh_token" => c.hubspot.as_ref().and_then(|h| s(&h.refresh_token)),
        "hubspot.client_secret" => c.hubspot.as_ref().and_then(|h| s(&h.client_secret)),
        "ingress.client_secret" => s(&c.ingress.client_secret),
        "salesforce.client_secret" => s(&c.salesforce.client_secret),
        "salesforce.access_token" => s(&c.salesforce.access_token),
        "kafka.sasl.password" => s(&c.kafka.sasl.password),
        "kafka.tls.key_password" => s(&c.kafka.tls.key_password),
        "kafka.sasl.oauthbearer_client_secret" => s(&c.kafka.sasl.oauthbearer_client_secret),
        other => panic!("no accessor for {other}"),
    }
}

#[test]
fn secrets_of_digits_from_the_environment_load_as_given() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // figment read these as integers: refused, with the number in the error message.
        jail.set_env("DB_PASSWORD", "0123456789");
        jail.set_env("KAFKA_SASL_PASSWORD", "31415926535");
        jail.set_env("CRMFLOW_BULLHORN__PASSWORD", "2718281828");
        jail.set_env("KAFKA_SSL_KEY_PASSWORD", "true");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.postgres.password.expose_secret(), "0123456789");
        assert_eq!(expose(&c, "kafka.sasl.password").unwrap(), "31415926535");
        assert_eq!(expose(&c, "bullhorn.password").unwrap(), "2718281828");
        assert_eq!(expose(&c, "kafka.tls.key_password").unwrap(), "true");
        // Non-secret neighbours keep their types.
        jail.set_env("KAFKA_SASL_MECHANISM", "PLAIN");
        jail.set_env("DB_PORT", "6000");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.postgres.port, 6000);
        assert_eq!(expose(&c, "kafka.sasl.password").unwrap(), "31415926535");
        Ok(())
    });
}

#[test]
fn config_errors_never_show_a_secret_and_take_one_line() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // An unquoted number as a password: serde's message quoted it.
        jail.create_file("crmflow.toml", "[postgres]\npassword = 987654321\n")?;
        let e = Config::load(None).unwrap_err().to_string();
        assert!(!e.contains("987654321"), "{e}");
        assert!(e.contains("postgres.password"), "{e}");
        // A broken line holding a secret: the TOML error quoted the line.
        jail.create_file(
            "crmflow.toml",
            "[kafka.sasl]\npassword = \"zqUnterminated\n",
        )?;
        let e = Config::load(None).unwrap_err().to_string();
        assert!(!e.contains("zqUnterminated"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("line 2"), "{e}");
        Ok(())
    });
}

#[test]
fn a_quoted_non_ascii_value_with_an_escape_is_an_error_not_a_panic() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // figment's unescaper panicked on this (found with PROPTEST_CASES=10000).
        jail.set_env("DB_HOST", "\"ເ\\🃑\"");
        let e = Config::load(None).unwrap_err().to_string();
        assert!(e.contains("DB_HOST"), "{e}");
        // A secret of that shape is not parsed at all: it loads as given.
        jail.set_env("DB_HOST", "h");
        jail.set_env("DB_PASSWORD", "\"ເ\\🃑\"");
        let c = Config::load(None).map_err(|e| e.to_string())?;
        assert_eq!(c.postgres.password.expose_secret(), "\"ເ\\🃑\"");
        Ok(())
    });
}
