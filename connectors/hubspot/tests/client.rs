//! The client against the in-process simulator: private-app and OAuth tokens (refresh ahead of expiry and on
//! 401), 429s by policy with backoff and `Retry-After`, 5xx and hang retries, list/archived paging, search
//! paging through ties up to the 10,000-result cap, batch read, index lag, the client-side limits, and
//! secrets kept out of `Debug` and errors.
#![cfg(feature = "sim")]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crmflow_hubspot::client::{
    Auth, AuthError, ClientConfig, ClientError, HubSpotClient, ListParams, RateLimitPolicy,
    RetryPolicy,
};
use crmflow_hubspot::sim::{FaultsPatch, SimConfig, SimHandle, Simulator};
use crmflow_hubspot::wire::CrmObject;
use secrecy::SecretString;

async fn sim(f: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut c = SimConfig::for_tests();
    f(&mut c);
    Simulator::start(c).await.expect("simulator")
}

fn fast(mut cfg: ClientConfig) -> ClientConfig {
    cfg.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        rate_limit_wait: Duration::from_millis(40),
        rate_limit_max_wait: Duration::from_millis(200),
        secondly_wait: Duration::from_millis(50),
        max_rate_limited: 1_000,
    };
    cfg.requests_per_10s = 100_000;
    cfg.search_requests_per_sec = 10_000;
    cfg
}

fn private(sim: &SimHandle) -> ClientConfig {
    fast(ClientConfig::private_app(
        sim.base_url(),
        SecretString::from(sim.private_app_token()),
    ))
}

fn oauth(sim: &SimHandle) -> ClientConfig {
    let c = sim.config();
    fast(ClientConfig::new(
        sim.base_url(),
        Auth::OAuth {
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone().into(),
            refresh_token: c.refresh_token.clone().into(),
        },
    ))
}

fn ids(objs: &[CrmObject]) -> Vec<u64> {
    objs.iter()
        .map(|o| o.id.parse().expect("numeric"))
        .collect()
}

async fn list_all(client: &HubSpotClient, object: &str, archived: bool) -> Vec<CrmObject> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = client
            .get_page::<CrmObject>(
                object,
                &ListParams {
                    limit: Some(100),
                    after: after.clone(),
                    properties: vec!["email".into()],
                    archived,
                },
            )
            .await
            .expect("page");
        out.extend(page.results.iter().cloned());
        match page.next_after() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_live_and_archived_objects_page_by_page() {
    let sim = sim(|c| c.contacts = 450).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    let live = list_all(&client, "contacts", false).await;
    let archived = list_all(&client, "contacts", true).await;
    let (n_live, n_archived) = sim.count("contacts").expect("count");
    assert_eq!(live.len(), n_live);
    assert_eq!(archived.len(), n_archived);
    assert!(n_archived > 0, "seeded data has archived contacts");
    assert!(archived
        .iter()
        .all(|o| o.archived && o.archived_at.is_some()));
    let l = ids(&live);
    assert!(l.windows(2).all(|w| w[0] < w[1]), "id order, no duplicates");
    let jobs = list_all(&client, "2-12345678", false).await;
    assert_eq!(jobs.len(), sim.count("jobs").expect("jobs").0);
    assert_eq!(client.requests_sent(), sim.stats().total_requests);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_refreshes_on_401_and_ahead_of_expiry() {
    let sim = sim(|c| c.access_token_ttl_secs = 2).await;
    let client = HubSpotClient::new(oauth(&sim)).expect("client");
    let one = ListParams {
        limit: Some(1),
        ..Default::default()
    };
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("first call gets a token");
    assert_eq!(sim.stats().tokens_issued, 1);
    // Every issued token expires now: the next call gets a 401, refreshes, and succeeds.
    assert_eq!(sim.expire_access_tokens(), 1);
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("refreshed after 401");
    let st = sim.stats();
    assert_eq!(st.tokens_issued, 2);
    assert_eq!(st.count("objects/contacts", "401"), 1);
    // The token lives 2 s; with the 5-minute margin cut to half the lifetime it is renewed after 1 s,
    // before it expires: no 401.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("renewed ahead");
    let st = sim.stats();
    assert_eq!(st.tokens_issued, 3);
    assert_eq!(st.count("objects/contacts", "401"), 1, "no new 401");
    // A forced 401 on a valid token: refresh once and go on.
    sim.set_faults(FaultsPatch {
        unauthorized_next: Some(1),
        ..Default::default()
    })
    .expect("faults");
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("refresh on 401");
    assert_eq!(sim.stats().tokens_issued, 4);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_fatal_and_secrets_stay_out_of_errors_and_debug() {
    let sim = sim(|_| {}).await;
    let mut cfg = oauth(&sim);
    cfg.auth = Auth::OAuth {
        client_id: sim.config().client_id.clone(),
        client_secret: sim.config().client_secret.clone().into(),
        refresh_token: "rt-very-secret-value".to_string().into(),
    };
    let debug = format!("{cfg:?}");
    let client = HubSpotClient::new(cfg).expect("client");
    let e = client
        .get_page::<CrmObject>("contacts", &ListParams::default())
        .await
        .expect_err("bad refresh token");
    assert!(
        matches!(e, ClientError::Auth(AuthError::InvalidGrant(ref c)) if c == "BAD_REFRESH_TOKEN"),
        "{e:?}"
    );
    assert!(!e.is_retriable());
    let pat_cfg = fast(ClientConfig::private_app(
        sim.base_url(),
        SecretString::from("pat-na1-very-secret-wrong".to_string()),
    ));
    let debug2 = format!("{pat_cfg:?}");
    let pat = HubSpotClient::new(pat_cfg).expect("client");
    let e2 = pat
        .get_page::<CrmObject>("contacts", &ListParams::default())
        .await
        .expect_err("wrong private-app token");
    assert!(
        matches!(e2, ClientError::Auth(AuthError::Rejected(_))),
        "{e2:?}"
    );
    assert!(!e2.is_retriable());
    for text in [
        debug,
        debug2,
        format!("{e} {e:?} {e2} {e2:?} {client:?} {pat:?}"),
    ] {
        for secret in [
            "very-secret",
            sim.config().client_secret.as_str(),
            sim.private_app_token().as_str(),
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_back_off_by_policy_honour_retry_after_and_stop_on_daily() {
    let sim = sim(|_| {}).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    let one = ListParams {
        limit: Some(1),
        ..Default::default()
    };
    // A storm of three TEN_SECONDLY_ROLLING 429s: waits of 40, 80, 160 ms (each ×[0.5, 1)).
    sim.set_faults(FaultsPatch {
        rate_limit_next: Some(3),
        ..Default::default()
    })
    .expect("faults");
    let t0 = Instant::now();
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("through the storm");
    assert!(
        t0.elapsed() >= Duration::from_millis(140),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(
        sim.stats().rate_limited.get("TEN_SECONDLY_ROLLING"),
        Some(&3)
    );
    // Retry-After wins over the policy's wait.
    sim.set_faults(FaultsPatch {
        rate_limit_next: Some(1),
        retry_after_secs: Some(1),
        ..Default::default()
    })
    .expect("faults");
    let t0 = Instant::now();
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("after Retry-After");
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    // DAILY is not retried in-call.
    sim.set_faults(FaultsPatch {
        rate_limit_next: Some(5),
        rate_limit_next_policy: Some("DAILY".into()),
        retry_after_secs: Some(0),
        ..Default::default()
    })
    .expect("faults");
    let before = client.requests_sent();
    let e = client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect_err("daily limit");
    assert!(e.is_daily_limit(), "{e}");
    assert!(matches!(
        e,
        ClientError::RateLimited {
            policy: RateLimitPolicy::Daily,
            ..
        }
    ));
    assert_eq!(client.requests_sent() - before, 1, "one request, no retry");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_hangs_are_retried_then_given_up() {
    let sim = sim(|_| {}).await;
    let mut cfg = private(&sim);
    cfg.request_timeout = Duration::from_millis(300);
    let client = HubSpotClient::new(cfg).expect("client");
    let one = ListParams {
        limit: Some(1),
        ..Default::default()
    };
    sim.set_faults(FaultsPatch {
        fail_next: Some(2),
        ..Default::default()
    })
    .expect("faults");
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("after two 5xx");
    sim.set_faults(FaultsPatch {
        hang_next: Some(1),
        hang_ms: Some(2_000),
        ..Default::default()
    })
    .expect("faults");
    let t0 = Instant::now();
    let page = client
        .search_modified::<CrmObject>("contacts", 0, None, &[], None, Some(5))
        .await
        .expect("after a timeout");
    assert_eq!(page.results.len(), 5);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    sim.set_faults(FaultsPatch {
        fail_next: Some(10),
        ..Default::default()
    })
    .expect("faults");
    let e = client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect_err("gives up");
    assert!(
        matches!(e, ClientError::RetriesExhausted { attempts: 4, .. }),
        "{e:?}"
    );
    assert!(e.is_retriable());
    assert!(e.status().is_some_and(|s| s >= 500));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_pages_through_ties_up_to_the_10k_cap_which_is_a_400() {
    let sim = sim(|c| c.contacts = 10).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    // 10,050 contacts written by one bulk import: all share one modified millisecond.
    let at = 1_790_000_000_000;
    let imported = sim
        .import("contacts", 10_050, at, &[("lifecyclestage", "lead")])
        .expect("import");
    let mut seen = BTreeSet::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    let err = loop {
        match client
            .search_modified::<CrmObject>("contacts", at, Some(at), &[], after.as_deref(), None)
            .await
        {
            Ok(page) => {
                pages += 1;
                assert_eq!(page.total, 10_050);
                for o in &page.results {
                    assert!(seen.insert(o.id.clone()), "{} twice", o.id);
                    assert_eq!(
                        o.properties["lastmodifieddate"].as_deref(),
                        Some("2026-09-21T14:13:20.000Z")
                    );
                }
                after = Some(page.next_after().expect("more pages").to_string());
            }
            Err(e) => break e,
        }
    };
    assert_eq!(pages, 100, "pages of 100 up to the cap");
    assert_eq!(seen.len(), 10_000, "only the first 10,000 are reachable");
    assert_eq!(after.as_deref(), Some("10000"));
    assert!(
        matches!(err, ClientError::Api { status: 400, ref category, .. } if category == "VALIDATION_ERROR"),
        "{err:?}"
    );
    assert!(!err.is_retriable());
    // Ties are ordered by id, so the unreachable ones are the highest ids.
    let first: BTreeSet<String> = imported[..10_000].iter().map(u64::to_string).collect();
    assert_eq!(seen, first);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_size_limits_are_checked_on_both_sides() {
    let sim = sim(|c| c.search_page_max = 100).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    let e = client
        .search_modified::<CrmObject>("contacts", 0, None, &[], None, Some(101))
        .await
        .expect_err("over the client maximum");
    assert!(matches!(e, ClientError::InvalidRequest(_)), "{e:?}");
    assert_eq!(client.requests_sent(), 0, "refused without a request");
    let mut cfg = private(&sim);
    cfg.search_page_max = 200;
    let lax = HubSpotClient::new(cfg).expect("client");
    let e = lax
        .search_modified::<CrmObject>("contacts", 0, None, &[], None, Some(200))
        .await
        .expect_err("over the server maximum");
    assert!(matches!(e, ClientError::Api { status: 400, .. }), "{e:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_read_chunks_by_100_skips_missing_and_follows_merges() {
    let sim = sim(|c| c.contacts = 300).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    let records = sim.records("contacts").expect("records");
    let live: Vec<u64> = ids(&records
        .iter()
        .filter(|r| !r.archived)
        .cloned()
        .collect::<Vec<_>>());
    let archived: Vec<u64> = ids(&records
        .iter()
        .filter(|r| r.archived)
        .cloned()
        .collect::<Vec<_>>());
    sim.merge("contacts", live[0], live[1]).expect("merge");
    let mut want: Vec<String> = live[2..152].iter().map(u64::to_string).collect();
    want.push("424242424242".into());
    want.push(archived[0].to_string());
    want.push(live[1].to_string());
    let got = client
        .batch_read::<CrmObject>(
            "contacts",
            &want,
            &["email".into(), "hs_merged_object_ids".into()],
            false,
        )
        .await
        .expect("batch read");
    let got_ids: BTreeSet<u64> = ids(&got).into_iter().collect();
    assert_eq!(got.len(), 151, "150 live + the merge survivor");
    assert!(
        got_ids.contains(&live[0]),
        "the merged-away id answers with the survivor"
    );
    assert!(!got_ids.contains(&archived[0]));
    let survivor = got
        .iter()
        .find(|o| o.id == live[0].to_string())
        .expect("survivor");
    assert_eq!(
        survivor.properties["hs_merged_object_ids"].as_deref(),
        Some(live[1].to_string().as_str())
    );
    assert_eq!(
        sim.stats().route_total("batch/read/contacts"),
        2,
        "153 ids in 2 requests"
    );
    let arch = client
        .batch_read::<CrmObject>("contacts", &[archived[0].to_string()], &[], true)
        .await
        .expect("archived batch read");
    assert_eq!(arch.len(), 1);
    assert!(arch[0].archived);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_lags_writes_and_never_shows_archived_objects() {
    // Lag generous enough that the first search surely runs before it ends on a loaded machine.
    let sim = sim(|c| c.index_lag_ms = 1_500).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    let id = sim
        .create("deals", &[("dealname", "Fresh deal")])
        .expect("create");
    let since = client
        .get_object::<CrmObject>("deals", &id.to_string(), &[], false)
        .await
        .expect("get")
        .expect("reads see it at once")
        .updated_at;
    let since_ms = chrono_ms(&since);
    let find = || client.search_modified::<CrmObject>("deals", since_ms, None, &[], None, None);
    assert_eq!(find().await.expect("search").total, 0, "not in search yet");
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let page = find().await.expect("search");
    assert_eq!(ids(&page.results), vec![id]);
    assert!(page.results[0]
        .properties
        .contains_key("hs_lastmodifieddate"));
    sim.archive("deals", id).expect("archive");
    sim.flush_index();
    assert_eq!(
        find().await.expect("search").total,
        0,
        "archived: never in search"
    );
    let archived = client
        .get_page::<CrmObject>(
            "deals",
            &ListParams {
                limit: Some(100),
                archived: true,
                ..Default::default()
            },
        )
        .await
        .expect("archived list");
    assert!(archived.results.iter().any(|o| o.id == id.to_string()));
    sim.shutdown().await;
}

fn chrono_ms(iso: &str) -> i64 {
    // 2026-09-21T14:13:20.123Z → epoch ms, without pulling a date crate into the test.
    let (date, time) = iso.trim_end_matches('Z').split_once('T').expect("iso");
    let d: Vec<i64> = date.split('-').map(|x| x.parse().expect("num")).collect();
    let (hms, ms) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms.split(':').map(|x| x.parse().expect("num")).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era_days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + day - 1 - 719_468;
    (era_days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1000 + ms.parse::<i64>().expect("ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_side_limits_keep_under_the_servers_and_headers_are_read() {
    let sim = sim(|c| {
        c.search_per_sec = 4;
        c.ten_secondly_limit = 30;
    })
    .await;
    // Under the server's limits: a client at exactly the server's rate can still meet a 429 when network
    // delays bunch requests together (it would then wait and retry).
    let mut cfg = private(&sim);
    cfg.search_requests_per_sec = 3;
    cfg.requests_per_10s = 25;
    let client = HubSpotClient::new(cfg).expect("client");
    let t0 = Instant::now();
    for _ in 0..10 {
        client
            .search_modified::<CrmObject>("contacts", 0, None, &[], None, Some(1))
            .await
            .expect("search");
    }
    // 4 per second, burst 1: the 10th search starts 2.25 s after the first.
    assert!(
        t0.elapsed() >= Duration::from_millis(2_000),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(sim.stats().rate_limited.get("SECONDLY"), None, "no 429");
    for _ in 0..3 {
        client
            .get_page::<CrmObject>(
                "contacts",
                &ListParams {
                    limit: Some(1),
                    ..Default::default()
                },
            )
            .await
            .expect("list");
    }
    let rl = client.rate_limits().expect("headers seen");
    assert_eq!(rl.max, Some(30));
    assert_eq!(rl.interval_ms, Some(10_000));
    assert_eq!(
        rl.remaining,
        Some(27),
        "3 served of 30 (search is counted apart)"
    );
    assert!(sim.stats().rate_limited.is_empty());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_and_single_objects() {
    let sim = sim(|_| {}).await;
    let client = HubSpotClient::new(private(&sim)).expect("client");
    let props = client.properties("contacts").await.expect("properties");
    let lm = props
        .iter()
        .find(|p| p.name == "lastmodifieddate")
        .expect("lastmodifieddate");
    assert_eq!(lm.kind, "datetime");
    assert!(props
        .iter()
        .any(|p| p.name == "email" && p.kind == "string"));
    let jobs = client.properties("jobs").await.expect("job properties");
    assert!(jobs
        .iter()
        .any(|p| p.name == "job_status" && !p.options.is_empty()));
    assert!(client
        .get_object::<CrmObject>("contacts", "1", &[], false)
        .await
        .expect("404 is None")
        .is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_that_meet_an_expired_token_share_one_refresh() {
    let sim = sim(|_| {}).await;
    let client = HubSpotClient::new(oauth(&sim)).expect("client");
    let one = ListParams {
        limit: Some(1),
        ..Default::default()
    };
    client
        .get_page::<CrmObject>("contacts", &one)
        .await
        .expect("first token");
    sim.expire_access_tokens();
    let calls = (0..8).map(|_| {
        let c = client.clone();
        let p = one.clone();
        async move { c.get_page::<CrmObject>("contacts", &p).await }
    });
    for r in futures::future::join_all(calls).await {
        r.expect("call after refresh");
    }
    assert_eq!(
        sim.stats().tokens_issued,
        2,
        "eight 401s, one refresh (the generation check)"
    );
    sim.shutdown().await;
}
