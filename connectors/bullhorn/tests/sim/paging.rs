//! Paging through `dateLastModified` ties: offset paging and the `(dateLastModified, id)` cursor pattern both
//! return exactly `total` records, each once, even when one millisecond holds more records than a page.

use std::collections::{BTreeSet, HashMap};

use crate::common::{login, start, state};
use serde_json::Value;

const FIELDS: &str = "id,dateLastModified";

#[tokio::test]
async fn offset_and_cursor_paging_return_exactly_total_through_ties() {
    let sim = start(|c| {
        c.candidates = 2400;
        c.job_orders = 20;
        c.tie_share = 0.5;
    })
    .await;
    let s = login(&sim).await;

    // Ground truth: live candidates and the largest same-millisecond group.
    let truth: Vec<Value> = state(&sim, "Candidate").await;
    let live: BTreeSet<i64> = truth
        .iter()
        .filter(|r| r["isDeleted"] == false)
        .filter_map(|r| r["id"].as_i64())
        .collect();
    let mut per_ms: HashMap<i64, usize> = HashMap::new();
    for r in &truth {
        *per_ms
            .entry(r["dateLastModified"].as_i64().expect("dlm"))
            .or_default() += 1;
    }
    let biggest = per_ms.values().copied().max().unwrap_or(0);
    assert!(
        biggest > 500,
        "the data must hold a tie group larger than a page, got {biggest}"
    );

    // Offset paging with pages of 500.
    let query = "isDeleted:0 AND dateLastModified:[19700101000000 TO *]";
    let mut seen = Vec::new();
    let mut start = 0usize;
    let mut total = None;
    loop {
        let (st, v) = s
            .get(
                "search/Candidate",
                &[
                    ("query", query),
                    ("fields", FIELDS),
                    ("sort", "dateLastModified,id"),
                    ("start", &start.to_string()),
                    ("count", "500"),
                ],
            )
            .await;
        assert!(st.is_success(), "{v}");
        let t = v["total"].as_u64().expect("total") as usize;
        assert_eq!(*total.get_or_insert(t), t, "total is stable across pages");
        let page = v["data"].as_array().expect("data").clone();
        if page.is_empty() {
            break;
        }
        seen.extend(page);
        start += 500;
        if start >= t {
            break;
        }
    }
    let ids: Vec<i64> = seen.iter().filter_map(|r| r["id"].as_i64()).collect();
    assert_eq!(ids.len(), live.len());
    assert_eq!(total, Some(live.len()));
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        live,
        "each live record exactly once"
    );
    let keys: Vec<(i64, i64)> = seen
        .iter()
        .map(|r| {
            (
                r["dateLastModified"].as_i64().unwrap_or(0),
                r["id"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "strictly ordered by (dateLastModified, id)"
    );

    // Cursor paging as incremental pollers do it, with a (dateLastModified, id) cursor: first the rest of the
    // current millisecond, then everything after it.
    let mut cursor = (0i64, 0i64);
    let mut got: Vec<(i64, i64)> = Vec::new();
    for _ in 0..200 {
        let same_ms = format!(
            "isDeleted:0 AND dateLastModified:[{0} TO {0}] AND id:{{{1} TO *]",
            cursor.0, cursor.1
        );
        let later = format!("isDeleted:0 AND dateLastModified:{{{} TO *]", cursor.0);
        let mut page = Vec::new();
        for q in [same_ms, later] {
            let (_, v) = s
                .get(
                    "search/Candidate",
                    &[
                        ("query", q.as_str()),
                        ("fields", FIELDS),
                        ("sort", "dateLastModified,id"),
                        ("count", "500"),
                    ],
                )
                .await;
            page = v["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|r| {
                    (
                        r["dateLastModified"].as_i64().unwrap_or(0),
                        r["id"].as_i64().unwrap_or(0),
                    )
                })
                .collect();
            if !page.is_empty() {
                break;
            }
        }
        let Some(last) = page.last().copied() else {
            break;
        };
        cursor = last;
        got.extend(page);
    }
    assert_eq!(
        got, keys,
        "cursor paging returns the same records in the same order"
    );
    sim.shutdown().await;
}
