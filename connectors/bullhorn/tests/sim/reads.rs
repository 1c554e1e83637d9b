//! Entity reads, search and query over HTTP, field selection, errors, and the write path.

use crate::common::{login, start};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn entity_reads_resolve_nested_fields() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    let (st, v) = s
        .get(
            "entity/Candidate/1",
            &[("fields", "id,firstName,address(city,zip),owner(id,firstName),primarySkills[2](id,name),category")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let d = &v["data"];
    assert_eq!(d["id"], 1);
    assert!(d["owner"]["firstName"].is_string(), "{d}");
    let skills = &d["primarySkills"];
    assert!(skills["total"].as_u64().is_some());
    assert!(skills["data"]
        .as_array()
        .is_some_and(|a| a.len() <= 2 && a.iter().all(|x| x["name"].is_string())));
    assert!(
        d["category"]["id"].is_i64() && d["category"].as_object().is_some_and(|o| o.len() == 1)
    );
    assert!(
        d.get("lastName").is_none(),
        "only selected fields are returned"
    );

    let (st, v) = s.get("entity/Candidate/1,2,3", &[("fields", "id")]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v, json!({"data": [{"id": 1}, {"id": 2}, {"id": 3}]}));

    let (st, v) = s
        .get(
            "entity/JobOrder/1",
            &[(
                "fields",
                "id,clientCorporation(id,name),clientContact(id,firstName,lastName)",
            )],
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert!(v["data"]["clientCorporation"]["name"].is_string());

    let (st, v) = s
        .get(
            "entity/JobOrder/1/skills",
            &[("fields", "id,name"), ("count", "1")],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 1);
    assert!(v["total"].as_u64().is_some_and(|t| t >= 1));
    assert!(v["data"][0]["name"].is_string());
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_entities_fields_and_malformed_queries_are_errors_with_messages() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);
    let cases: &[Case] = &[
        ("entity/Nope/1", &[("fields", "id")], 404),
        ("entity/Candidate/1", &[("fields", "id,bogus")], 404),
        ("entity/Candidate/999999", &[("fields", "id")], 404),
        ("entity/Candidate/abc", &[("fields", "id")], 400),
        (
            "search/Candidate",
            &[("query", "isDeleted:0 AND (id:1"), ("fields", "id")],
            400,
        ),
        (
            "search/Candidate",
            &[("query", "dateLastModified:[soon TO *]"), ("fields", "id")],
            400,
        ),
        (
            "search/Candidate",
            &[("query", "bogus:1"), ("fields", "id")],
            400,
        ),
        (
            "search/Candidate",
            &[("query", "id:1"), ("fields", "*")],
            400,
        ),
        (
            "search/Candidate",
            &[("query", "id:1"), ("fields", "id"), ("sort", "bogus")],
            404,
        ),
        (
            "search/Candidate",
            &[("query", "id:1"), ("fields", "id"), ("count", "-1")],
            400,
        ),
        (
            "query/JobOrder",
            &[("where", "id >"), ("fields", "id")],
            400,
        ),
        (
            "query/JobOrder",
            &[("where", "nope = 1"), ("fields", "id")],
            400,
        ),
        ("query/JobOrder", &[("where", "id > 0")], 400),
        ("query/Nope", &[("where", "id > 0"), ("fields", "id")], 404),
    ];
    for (path, q, want) in cases {
        let (st, v) = s.get(path, q).await;
        assert_eq!(st.as_u16(), *want, "{path} {q:?}: {v}");
        assert!(
            v["errorMessage"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {v}"
        );
        assert_eq!(v["errorCode"].as_u64(), Some(u64::from(*want)), "{path}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn search_and_query_envelopes() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    let (st, v) = s
        .get(
            "search/Candidate",
            &[
                ("query", "id:[1 TO 30] AND isDeleted:false"),
                ("fields", "id,email"),
                ("sort", "-id"),
                ("count", "5"),
            ],
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let data = v["data"].as_array().expect("data");
    assert_eq!(v["count"], data.len());
    assert!(data.len() == 5 && data.iter().all(|d| d["_score"].is_f64()));
    assert!(
        data[0]["id"].as_i64() > data[1]["id"].as_i64(),
        "sorted descending"
    );
    assert!(
        v["total"].as_u64().is_some_and(|t| (25..=30).contains(&t)),
        "{}",
        v["total"]
    );

    // Id lists, and bare ids when no fields are asked for.
    let (_, v) = s.get("search/Candidate", &[("query", "id:3 5 7")]).await;
    assert_eq!(v["data"], json!([3, 5, 7]));

    // POST search with the query in the body.
    let (st, v) = s
        .send(
            Method::POST,
            "search/JobOrder?fields=id&count=2",
            Some(json!({"query": "isDeleted:0"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 2);

    // Default count 20, max 500 with a warning.
    let (_, v) = s
        .get(
            "search/Candidate",
            &[("query", "isDeleted:0"), ("fields", "id")],
        )
        .await;
    assert_eq!(v["count"], 20);
    let (_, v) = s
        .get(
            "search/Candidate",
            &[("query", "id:[* TO *]"), ("fields", "id"), ("count", "900")],
        )
        .await;
    assert_eq!(v["count"], 200, "200 candidates in the test data");
    assert!(v["messages"].is_array());

    // /query: no total unless showTotalMatched.
    let q = [
        ("where", "id IN (1,2,3) OR id >= 199"),
        ("fields", "id"),
        ("orderBy", "id"),
    ];
    let (st, v) = s.get("query/Candidate", &q).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v.get("total").is_none());
    assert_eq!(
        v["data"],
        json!([{"id":1},{"id":2},{"id":3},{"id":199},{"id":200}])
    );
    let mut q2 = q.to_vec();
    q2.push(("showTotalMatched", "true"));
    let (_, v) = s.get("query/Candidate", &q2).await;
    assert_eq!(v["total"], 5);
    let (_, v) = s
        .get(
            "query/Skill",
            &[("where", "name = 'rust'"), ("fields", "id,name")],
        )
        .await;
    assert_eq!(
        v["data"][0]["name"], "Rust",
        "string equality is case-insensitive"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn writes_move_date_last_modified_and_soft_delete() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    let before_max = sim
        .records("Candidate")
        .expect("records")
        .iter()
        .filter_map(|r| r["dateLastModified"].as_i64())
        .max()
        .expect("max");

    let (st, v) = s
        .send(Method::PUT, "entity/Candidate", Some(json!({"firstName": "Ada", "lastName": "Lovelace", "name": "Ada Lovelace", "owner": {"id": 1}})))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["changeType"], "INSERT");
    assert_eq!(v["changedEntityType"], "Candidate");
    let id = v["changedEntityId"].as_i64().expect("id");
    assert_eq!(id, 201);

    let (_, got) = s
        .get(
            &format!("entity/Candidate/{id}"),
            &[("fields", "id,firstName,dateLastModified,isDeleted")],
        )
        .await;
    let inserted_at = got["data"]["dateLastModified"].as_i64().expect("dlm");
    assert!(inserted_at >= before_max);
    assert_eq!(got["data"]["isDeleted"], false);

    let (st, v) = s
        .send(
            Method::POST,
            "entity/Candidate/5",
            Some(json!({"email": "new@example.org"})),
        )
        .await;
    assert_eq!(
        (st, v["changeType"].clone()),
        (StatusCode::OK, json!("UPDATE"))
    );
    let rec = sim.get("Candidate", 5).expect("record");
    assert_eq!(rec["email"], "new@example.org");
    assert!(rec["dateLastModified"].as_i64() >= Some(inserted_at));

    let (st, v) = s.send(Method::DELETE, "entity/Candidate/5", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        v,
        json!({"changedEntityType":"Candidate","changedEntityId":5,"changeType":"DELETE","data":{}})
    );
    let (st, got) = s
        .get("entity/Candidate/5", &[("fields", "id,isDeleted")])
        .await;
    assert_eq!(
        (st, got["data"]["isDeleted"].clone()),
        (StatusCode::OK, json!(true)),
        "soft-deleted rows stay readable"
    );
    let (_, hits) = s
        .get(
            "search/Candidate",
            &[("query", "id:5 AND isDeleted:0"), ("fields", "id")],
        )
        .await;
    assert_eq!(hits["total"], 0);

    // Bad writes: unknown field, wrong type, immutable type, hard-delete refusal.
    for (m, path, body) in [
        (Method::PUT, "entity/Candidate", Some(json!({"bogus": 1}))),
        (
            Method::POST,
            "entity/Candidate/6",
            Some(json!({"salary": "lots"})),
        ),
        (
            Method::POST,
            "entity/Candidate/6",
            Some(json!({"owner": {"id": 99999}})),
        ),
        (Method::PUT, "entity/Skill", Some(json!({"name": "x"}))),
        (Method::DELETE, "entity/ClientCorporation/1", None),
    ] {
        let (st, v) = s.send(m.clone(), path, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{m} {path}: {v}");
        assert!(v["errorMessage"].is_string());
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn lucene_dates_in_both_formats_select_the_same_records() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    // 2024-06-01T00:00:00Z
    let a = s
        .get(
            "search/Candidate",
            &[
                ("query", "dateLastModified:[20240601000000 TO *]"),
                ("fields", "id"),
                ("count", "500"),
            ],
        )
        .await
        .1;
    let b = s
        .get(
            "search/Candidate",
            &[
                ("query", "dateLastModified:[1717200000000 TO *]"),
                ("fields", "id"),
                ("count", "500"),
            ],
        )
        .await
        .1;
    assert_eq!(a["total"], b["total"]);
    let truth = sim
        .records("Candidate")
        .expect("records")
        .iter()
        .filter(|r| r["dateLastModified"].as_i64() >= Some(1_717_200_000_000))
        .count();
    assert_eq!(a["total"].as_u64(), Some(truth as u64));
    let c: Value = s
        .get(
            "search/Candidate",
            &[
                ("query", "dateLastModified:{1717200000000 TO 1717200000000]"),
                ("fields", "id"),
            ],
        )
        .await
        .1;
    assert_eq!(
        c["total"], 0,
        "exclusive lower bound equal to the upper bound matches nothing"
    );
    sim.shutdown().await;
}

/// Bullhorn's `restUrl` ends with `/`; clients that join it with another `/` (pyhorn-flow's
/// `"/".join(...)`) ask for `.../rest-services/<corp>//ping`, which Bullhorn serves.
#[tokio::test]
async fn empty_path_segments_are_served_as_bullhorn_does() {
    let sim = start(|_| {}).await;
    let s = login(&sim).await;
    assert!(s.rest_url.ends_with('/'), "{}", s.rest_url);
    let (st, v) = s.get("/ping", &[]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["sessionExpires"].is_i64(), "{v}");
    let (st, v) = s.get("//entity//Candidate/1", &[("fields", "id")]).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["id"], 1);
    // Empty segments do not open a way around the session check.
    let url = format!("{}/ping", s.rest_url);
    let st = reqwest::get(url).await.unwrap().status();
    assert_ne!(st, StatusCode::OK);
    // An unknown path still answers 404.
    let (st, _) = s.get("//nope", &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    sim.shutdown().await;
}
