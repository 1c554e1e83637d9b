//! Sink benchmark: drains a backlog of ~1 KB canonical candidates from Kafka into Postgres with
//! the real sink stage, and in the same run measures the baseline: `psql` doing a `COPY` of the
//! same rows (CSV) into a staging table followed by `INSERT ... ON CONFLICT DO UPDATE`.
//! Prints rows/s for both, their ratio, and the process's peak RSS while draining.
//!
//! Needs the local services (`scripts/services up`, env from `scripts/services env`) and `psql`.
//! `cargo bench -p crmflow --bench sink` (`BENCH_ROWS` sets the backlog, default 200,000;
//! `BENCH_PG_SSLMODE=verify-full` measures both over TLS, `disable` over plaintext;
//! `BENCH_ATTRIBUTES=5` gives every record five mapped custom fields, one of each type but
//! boolean: string, long, double, list<string>, date).

mod common;

use std::io::Write;
use std::time::Instant;

use crmflow::config::Config;
use crmflow::kafka::{self, trace, Producer, Topics};
use crmflow::model::{Address, Candidate, Lineage};
use rdkafka::message::OwnedHeaders;

fn config() -> Config {
    common::isolated_config("bench_sink")
}

fn candidate(i: u64) -> Candidate {
    let words = [
        "Rust",
        "Kafka",
        "PostgreSQL",
        "streaming",
        "distributed",
        "systems",
        "recruiting",
        "pipelines",
        "observability",
        "latency",
    ];
    let summary: String = (0..95)
        .map(|k| words[((i as usize) * 7 + k) % words.len()])
        .collect::<Vec<_>>()
        .join(" ");
    Candidate {
        crm: "bullhorn".into(),
        crm_id: i.to_string(),
        source_version: 1_760_000_000_000 + i as i64,
        deleted: false,
        first_name: Some(format!("First{i}")),
        last_name: Some("Lastname".into()),
        email: Some(format!("person.{i}@example.com")),
        phone: Some("+14155550100".into()),
        mobile: None,
        address: Some(Address {
            line1: Some(format!("{i} Main Street")),
            line2: None,
            city: Some("Omaha".into()),
            state: Some("NE".into()),
            zip: Some("68124".into()),
            country_code: Some("US".into()),
        }),
        status: Some("Active".into()),
        occupation: Some("Software engineer".into()),
        company_name: Some("Acme".into()),
        skills: vec!["Rust".into(), "Kafka".into(), "SQL".into()],
        summary: Some(summary),
        date_available: Some(1_760_000_000_000),
        owner_id: Some("7".into()),
        owner_name: Some("Owner Name".into()),
        date_added: Some(1_750_000_000_000),
        lineage: Lineage {
            crm: "bullhorn".into(),
            crm_id: i.to_string(),
            source_version: 1_760_000_000_000 + i as i64,
            event_id: format!("{i:032x}"),
            raw_topic: "crm.raw.bullhorn.candidate".into(),
            raw_partition: (i % 6) as i32,
            raw_offset: i as i64,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        },
        attributes: attributes(i),
    }
}

/// `BENCH_ATTRIBUTES` (0..=5) mapped custom fields per record.
fn attributes(i: u64) -> crmflow::model::Attributes {
    use crmflow::model::{AttributeDate, AttributeValue as V};
    let n: usize = std::env::var("BENCH_ATTRIBUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let all = [
        (
            "visa_status",
            V::String(["Citizen", "Work visa"][(i % 2) as usize].into()),
        ),
        ("notice_days", V::Long((i % 90) as i64)),
        ("day_rate", V::Double(400.0 + (i % 300) as f64 + 0.5)),
        ("sectors", V::List(vec!["Fintech".into(), "Energy".into()])),
        (
            "available_from",
            V::Date(AttributeDate {
                epoch_ms: 1_767_225_600_000 + (i as i64 % 365) * 86_400_000,
            }),
        ),
    ];
    all.into_iter()
        .take(n)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

fn csv_field(v: Option<&str>) -> String {
    match v {
        None => String::new(),
        Some(s) => format!("\"{}\"", s.replace('"', "\"\"")),
    }
}

fn csv_row(c: &Candidate) -> String {
    let a = c.address.clone().unwrap_or_default();
    let ts = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339())
    };
    let l = &c.lineage;
    [
        csv_field(Some(&c.crm)),
        csv_field(Some(&c.crm_id)),
        c.source_version.to_string(),
        String::new(),
        csv_field(c.first_name.as_deref()),
        csv_field(c.last_name.as_deref()),
        csv_field(c.email.as_deref()),
        csv_field(c.phone.as_deref()),
        csv_field(c.mobile.as_deref()),
        csv_field(a.line1.as_deref()),
        csv_field(a.line2.as_deref()),
        csv_field(a.city.as_deref()),
        csv_field(a.state.as_deref()),
        csv_field(a.zip.as_deref()),
        csv_field(a.country_code.as_deref()),
        csv_field(c.status.as_deref()),
        csv_field(c.occupation.as_deref()),
        csv_field(c.company_name.as_deref()),
        csv_field(Some(&format!("{{{}}}", c.skills.join(",")))),
        csv_field(c.summary.as_deref()),
        csv_field(ts(c.date_available).as_deref()),
        csv_field(c.owner_id.as_deref()),
        csv_field(c.owner_name.as_deref()),
        csv_field(ts(c.date_added).as_deref()),
        csv_field(Some(&l.event_id)),
        csv_field(Some(&l.raw_topic)),
        l.raw_partition.to_string(),
        l.raw_offset.to_string(),
        csv_field(l.trace_id.as_deref()),
    ]
    .join(",")
}

const COLS: &str = "crm, crm_id, source_version, deleted_at, first_name, last_name, email, phone, mobile, \
address_line1, address_line2, city, state, zip, country_code, status, occupation, company_name, skills, \
summary, date_available, owner_id, owner_name, date_added, event_id, raw_topic, raw_partition, raw_offset, trace_id";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rows: u64 = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let cfg = config();
    if let Err(e) = crmflow::store::migrate(&cfg).await {
        eprintln!("sink bench needs the local services (scripts/services up): {e}");
        std::process::exit(2);
    }
    kafka::ensure_topics(&cfg.kafka, &crmflow::pipeline::topic_specs(&cfg))
        .await
        .expect("topics");
    let topic = Topics::new(&cfg.kafka).canonical("candidate");

    // The backlog.
    let t = Instant::now();
    let producer = Producer::new(&cfg.kafka).unwrap();
    let mut acks = Vec::with_capacity(rows as usize);
    let mut bytes_total = 0usize;
    for i in 1..=rows {
        let c = candidate(i);
        let bytes = crmflow::codec::candidate().encode(&c).unwrap();
        bytes_total += bytes.len();
        let h = trace::inject(OwnedHeaders::new(), &common::backlog_traceparent());
        acks.push(
            producer
                .send(&topic, format!("bullhorn:{i}").as_bytes(), &bytes, h)
                .await
                .unwrap(),
        );
        if acks.len() >= 50_000 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks {
        a.await.unwrap();
    }
    println!(
        "backlog: {rows} canonical candidates, {} bytes/record (Avro), produced in {:.1}s",
        bytes_total / rows as usize,
        t.elapsed().as_secs_f64()
    );

    // Client-side cost of one record: Avro decode of the canonical value.
    let sample: Vec<Vec<u8>> = (1..=20_000u64)
        .map(|i| crmflow::codec::candidate().encode(&candidate(i)).unwrap())
        .collect();
    let t = Instant::now();
    for b in &sample {
        std::hint::black_box(crmflow::codec::candidate().decode(b).unwrap());
    }
    println!(
        "avro decode: {:.1} µs/record",
        t.elapsed().as_secs_f64() * 1e6 / sample.len() as f64
    );

    // The sink, as its own process (`crmflow run --stages sink --until-caught-up`), so its peak
    // RSS is the stage's alone; sampled from /proc while it runs.
    let (took, sink_hwm_kib) = {
        let otlp = match common::trace_ratio() {
            Some(_) => Some(common::start_receiver().await),
            None => None,
        };
        let out = tokio::task::block_in_place(|| {
            common::run_stage_process_traced(&cfg, "sink", otlp.as_deref())
        });
        match common::trace_ratio() {
            Some(r) => println!(
                "tracing on: sample ratio {r}, {} spans received",
                common::SPANS_RECEIVED.load(std::sync::atomic::Ordering::Relaxed)
            ),
            None => println!("tracing off"),
        }
        out
    };
    let sink_secs = took.as_secs_f64();
    let client = crmflow::store::connect(&cfg).await.unwrap();
    let written: i64 = client
        .query_one("SELECT count(*) FROM candidates", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written as u64, rows, "every row written");

    // The baseline: psql COPY into a staging table + INSERT ... ON CONFLICT DO UPDATE.
    let schema = &cfg.postgres.schema;
    let dir = std::env::temp_dir().join(format!("{schema}.csv"));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&dir).unwrap());
        for i in 1..=rows {
            writeln!(f, "{}", csv_row(&candidate(i))).unwrap();
        }
    }
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{schema}\".baseline (LIKE \"{schema}\".candidates INCLUDING ALL)"
        ))
        .await
        .unwrap();
    let updates: Vec<String> = COLS
        .split(", ")
        .skip(2)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let script = format!(
        "SET search_path = \"{schema}\", public;\n\
         BEGIN;\n\
         CREATE TEMP TABLE staging (LIKE baseline INCLUDING DEFAULTS) ON COMMIT DROP;\n\
         \\copy staging ({COLS}) FROM '{}' WITH (FORMAT csv)\n\
         INSERT INTO baseline ({COLS}) SELECT {COLS} FROM staging \
         ON CONFLICT (crm, crm_id) DO UPDATE SET {} WHERE baseline.source_version < EXCLUDED.source_version;\n\
         COMMIT;\n",
        dir.display(),
        updates.join(", ")
    );
    let url = format!(
        "postgres://{}:{}@{}:{}/{}?sslmode={}{}",
        cfg.postgres.user,
        secrecy::ExposeSecret::expose_secret(&cfg.postgres.password),
        cfg.postgres.host,
        cfg.postgres.port,
        cfg.postgres.dbname,
        cfg.postgres.sslmode.as_str(),
        cfg.postgres
            .sslrootcert
            .as_deref()
            .map(|p| format!("&sslrootcert={}", p.display()))
            .unwrap_or_default()
    );
    println!("postgres sslmode: {}", cfg.postgres.sslmode.as_str());
    let t = Instant::now();
    let mut child = std::process::Command::new("psql")
        .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let base_secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&dir);

    let sink_rate = rows as f64 / sink_secs;
    let base_rate = rows as f64 / base_secs;
    println!(
        "sink stage: {rows} rows in {sink_secs:.1}s = {sink_rate:.0} rows/s (a fresh process: start-up, migrations, group join and one-shot exit included)"
    );
    println!("psql COPY + INSERT ON CONFLICT baseline: {base_secs:.1}s = {base_rate:.0} rows/s");
    println!("ratio sink / baseline: {:.2}", sink_rate / base_rate);
    println!(
        "sink process peak RSS (VmHWM) while draining: {} MiB",
        sink_hwm_kib / 1024
    );
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
