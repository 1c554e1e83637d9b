//! Property tests of the simulator's SOQL parser against hostile queries: its own tokens in any
//! order, any text, and nesting deeper than any real query. It answers a query or
//! `MALFORMED_QUERY`, never a panic or a stack overflow.

use proptest::prelude::*;

use super::soql::parse;

fn soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("SELECT"),
            Just("Id"),
            Just("Name"),
            Just("count()"),
            Just("FROM"),
            Just("Contact"),
            Just("Position__c"),
            Just("WHERE"),
            Just("AND"),
            Just("OR"),
            Just("NOT"),
            Just("IN"),
            Just("("),
            Just(")"),
            Just(","),
            Just("'"),
            Just("'a\\'b'"),
            Just("\\"),
            Just("="),
            Just("!="),
            Just("<"),
            Just("<="),
            Just(">"),
            Just(">="),
            Just("LIKE"),
            Just("'%x%'"),
            Just("ORDER"),
            Just("BY"),
            Just("ASC"),
            Just("DESC"),
            Just("NULLS"),
            Just("FIRST"),
            Just("LAST"),
            Just("LIMIT"),
            Just("2000"),
            Just("-1"),
            Just("99999999999999999999999"),
            Just("2024-01-01T00:00:00Z"),
            Just("2024-13-45T99:99:99.999+25:00"),
            Just("TRUE"),
            Just("NULL"),
            Just("SystemModstamp"),
            Just("Account.Name"),
            Just("é"),
        ],
        0..20,
    )
    .prop_map(|parts| parts.join(" "))
}

proptest! {

    #[test]
    fn soql_parses_or_is_malformed(q in prop_oneof![soup(), any::<String>()]) {
        if let Err(e) = parse(&q) {
            prop_assert!(["MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE"].contains(&e.code));
        }
    }

    #[test]
    fn where_clauses_parse_or_are_malformed(w in soup()) {
        if let Err(e) = parse(&format!("SELECT Id FROM Contact WHERE {w}")) {
            prop_assert!(["MALFORMED_QUERY", "INVALID_FIELD", "INVALID_TYPE"].contains(&e.code));
        }
    }
}

#[test]
fn deep_nesting_is_malformed_not_a_stack_overflow() {
    let n = 100_000;
    for w in [
        format!("{}Id = 'a'{}", "(".repeat(n), ")".repeat(n)),
        format!("{}Id = 'a'", "NOT ".repeat(n)),
    ] {
        let e = parse(&format!("SELECT Id FROM Contact WHERE {w}")).unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(e.message.contains("nest"), "{}", e.message);
    }
    let ok = format!("{}Id = 'a'{}", "(".repeat(20), ")".repeat(20));
    assert!(parse(&format!("SELECT Id FROM Contact WHERE {ok}")).is_ok());
}

/// One write of the index property test.
#[derive(Debug, Clone)]
enum Write {
    Insert(i64),
    Update(usize, i64),
    Delete(usize, i64),
    Undelete(usize, i64),
    Merge(usize, usize, i64),
}

fn writes() -> impl Strategy<Value = Vec<Write>> {
    // Times from a span of 12 ms: many ties; writes may also move a record back in time.
    let t = 0i64..12;
    let k = 0usize..64;
    proptest::collection::vec(
        prop_oneof![
            4 => t.clone().prop_map(Write::Insert),
            3 => (k.clone(), t.clone()).prop_map(|(k, t)| Write::Update(k, t)),
            1 => (k.clone(), t.clone()).prop_map(|(k, t)| Write::Delete(k, t)),
            1 => (k.clone(), t.clone()).prop_map(|(k, t)| Write::Undelete(k, t)),
            1 => (k.clone(), k, t).prop_map(|(w, l, t)| Write::Merge(w, l, t)),
        ],
        0..80,
    )
}

/// The `WHERE`, `ORDER BY` and `LIMIT` of one query of the index property test.
#[derive(Debug, Clone)]
struct Shape {
    filter: u8,
    order: u8,
    t: i64,
    id: usize,
    limit: Option<usize>,
    all: bool,
}

fn shapes() -> impl Strategy<Value = Shape> {
    (
        0u8..9,
        0u8..4,
        -1i64..13,
        0usize..70,
        proptest::option::of(0usize..20),
        any::<bool>(),
    )
        .prop_map(|(filter, order, t, id, limit, all)| Shape {
            filter,
            order,
            t,
            id,
            limit,
            all,
        })
}

const T_BASE: i64 = 1_704_067_200_000;

fn soql_of(shape: &Shape, ids: &[String]) -> String {
    let t = chrono::DateTime::from_timestamp_millis(T_BASE + shape.t)
        .map(crate::wire::format_datetime)
        .unwrap_or_default();
    // An existing id, or one between/after them (not an id at all).
    let id = ids
        .get(shape.id)
        .cloned()
        .unwrap_or_else(|| format!("003{}", shape.id));
    let filter = match shape.filter {
        0 => format!(" WHERE (SystemModstamp > {t}) OR (SystemModstamp = {t} AND Id > '{id}')"),
        1 => format!(" WHERE SystemModstamp >= {t}"),
        2 => format!(" WHERE SystemModstamp > {t}"),
        3 => format!(" WHERE SystemModstamp = {t} AND Id >= '{id}'"),
        4 => format!(" WHERE Id > '{id}'"),
        5 => format!(" WHERE NOT SystemModstamp < {t}"),
        6 => format!(" WHERE SystemModstamp >= {t} AND IsDeleted = false"),
        7 => format!(" WHERE (SystemModstamp = {t} AND Id = '{id}') OR SystemModstamp > {t}"),
        _ => String::new(),
    };
    let order = match shape.order {
        0 => " ORDER BY SystemModstamp, Id",
        1 => " ORDER BY SystemModstamp",
        2 => " ORDER BY SystemModstamp ASC, Id ASC, LastName DESC",
        _ => " ORDER BY systemmodstamp asc nulls last, ID",
    };
    let limit = shape
        .limit
        .map(|l| format!(" LIMIT {l}"))
        .unwrap_or_default();
    format!("SELECT Id, SystemModstamp FROM Contact{filter}{order}{limit}")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Keyset pages read from the `(SystemModstamp, Id)` index are the scan-and-sort answer, after
    /// any history of inserts, updates (also moving a record back), deletes, undeletes and merges.
    #[test]
    fn index_answers_equal_scan_and_sort(history in writes(), queries in proptest::collection::vec(shapes(), 1..12)) {
        use super::schema::ObjectDef;
        use super::store::Db;
        let mut db = Db::new(
            vec![ObjectDef::contact("Contact"), ObjectDef::position("Position__c")],
            "5g",
            crate::ids::make("005", "5g", 1),
        );
        let mut ids: Vec<String> = Vec::new();
        let id = |ids: &[String], k: usize| ids.get(k % ids.len().max(1)).cloned();
        for w in history {
            match w {
                Write::Insert(t) => {
                    let mut f = serde_json::Map::new();
                    f.insert("LastName".into(), serde_json::Value::String(format!("n{t}")));
                    let c = db.insert(0, &f, T_BASE + t).unwrap();
                    ids.push(c.id);
                }
                Write::Update(k, t) => if let Some(i) = id(&ids, k) {
                    let mut f = serde_json::Map::new();
                    f.insert("Title".into(), serde_json::Value::String(format!("t{t}")));
                    let _ = db.update(0, &i, &f, T_BASE + t);
                },
                Write::Delete(k, t) => if let Some(i) = id(&ids, k) {
                    let _ = db.delete(0, &i, T_BASE + t);
                },
                Write::Undelete(k, t) => if let Some(i) = id(&ids, k) {
                    let _ = db.undelete(0, &i, T_BASE + t);
                },
                Write::Merge(w, l, t) => if let (Some(w), Some(l)) = (id(&ids, w), id(&ids, l)) {
                    let _ = db.merge(0, &w, &l, T_BASE + t);
                },
            }
        }
        prop_assert!(db.objects[0].index_consistent());
        let mut sorted = ids.clone();
        sorted.sort();
        for shape in queries {
            let q = super::soql::parse(&soql_of(&shape, &sorted)).unwrap();
            let key = |rows: Vec<&super::store::Record>| -> Vec<(i64, String)> {
                rows.into_iter().map(|r| (r.modstamp_ms, r.id.clone())).collect()
            };
            let (n1, fast, _) = db.run_query_planned(&q, shape.all, true).unwrap();
            let (n2, scan, _) = db.run_query_planned(&q, shape.all, false).unwrap();
            prop_assert_eq!(n1, n2);
            prop_assert_eq!(key(fast), key(scan), "{:?}", shape);
        }
    }
}
