//! Property tests of the simulator's query parsers against hostile queries: Lucene `query` and
//! JPQL-ish `where` built from their own tokens in any order, any text, and nesting deeper than
//! any real query. They answer a parse or a 400, never a panic or a stack overflow.

use proptest::prelude::*;

use super::store::entity_def;
use super::{jpql, lucene};

fn lucene_query() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("isDeleted:0"),
            Just("dateLastModified:[20221215121030 TO *]"),
            Just("id:[10 TO 20]"),
            Just("id:{1 TO 2]"),
            Just("firstName:\"Mary Ann\""),
            Just("lastName:Smi*"),
            Just("J?nes"),
            Just("AND"),
            Just("OR"),
            Just("NOT"),
            Just("&&"),
            Just("||"),
            Just("!"),
            Just("-"),
            Just("+"),
            Just("("),
            Just(")"),
            Just("status:("),
            Just("address.city:"),
            Just("owner.id:3"),
            Just("email:*"),
            Just("salary:[* TO 0]"),
            Just("\""),
            Just("["),
            Just("]"),
            Just("{"),
            Just("}"),
            Just(":"),
            Just("\\"),
            Just("TO"),
            Just("*"),
            Just("x.y.z:"),
            Just("é"),
            Just("99999999999999999999999"),
            Just("dateAdded:[0 TO 99999999999999]"),
        ],
        0..16,
    )
    .prop_map(|parts| parts.join(" "))
}

fn jpql_where() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("id"),
            Just(">"),
            Just(">="),
            Just("<"),
            Just("<>"),
            Just("!="),
            Just("="),
            Just("0"),
            Just("-1.5"),
            Just("1e400"),
            Just("'Closed'"),
            Just("'O''Brien'"),
            Just("'"),
            Just("AND"),
            Just("OR"),
            Just("NOT"),
            Just("IN"),
            Just("("),
            Just(")"),
            Just(","),
            Just("IS"),
            Just("NULL"),
            Just("LIKE"),
            Just("'%engineer%'"),
            Just("clientCorporation.id"),
            Just("address.city"),
            Just("dateLastModified"),
            Just("isDeleted"),
            Just("true"),
            Just("status"),
            Just("salary"),
            Just("é"),
            Just("99999999999999999999999"),
        ],
        0..16,
    )
    .prop_map(|parts| parts.join(" "))
}

proptest! {

    #[test]
    fn lucene_queries_parse_or_err(q in prop_oneof![lucene_query(), any::<String>()]) {
        for entity in ["Candidate", "JobOrder"] {
            if let Ok(e) = lucene::parse(entity_def(entity).unwrap(), &q) {
                let _ = (e.key_only(), e.modified_bounds(), e.eval_key(1, 2, false));
            }
        }
        let _ = lucene::parse_date(&q);
    }

    #[test]
    fn jpql_clauses_parse_or_err(w in prop_oneof![jpql_where(), any::<String>()]) {
        for entity in ["Candidate", "JobOrder"] {
            if let Ok(e) = jpql::parse(entity_def(entity).unwrap(), &w) {
                let _ = (e.key_only(), e.modified_bounds(), e.eval_key(1, 2, false));
            }
        }
    }
}

#[test]
fn deep_nesting_is_a_400_not_a_stack_overflow() {
    let cand = entity_def("Candidate").unwrap();
    // 100,000 levels fit in a URL hyper accepts; each was a recursive call on a 2 MiB stack.
    let n = 100_000;
    let lucene_deep = format!("{}id:1{}", "(".repeat(n), ")".repeat(n));
    let err = lucene::parse(cand, &lucene_deep).unwrap_err();
    assert!(err.to_string().contains("nest"), "{err}");
    let nots = format!("{}id:1", "NOT ".repeat(n));
    assert!(lucene::parse(cand, &nots).is_err());
    let jpql_deep = format!("{}id = 1{}", "(".repeat(n), ")".repeat(n));
    let err = jpql::parse(cand, &jpql_deep).unwrap_err();
    assert!(err.to_string().contains("nest"), "{err}");
    let nots = format!("{}id = 1", "NOT ".repeat(n));
    assert!(jpql::parse(cand, &nots).is_err());
    // Real queries nest a few levels and still parse.
    let ok = format!("{}id:1{}", "(".repeat(20), ")".repeat(20));
    assert!(lucene::parse(cand, &ok).is_ok());
    let ok = format!("{}id = 1{}", "(".repeat(20), ")".repeat(20));
    assert!(jpql::parse(cand, &ok).is_ok());
}
