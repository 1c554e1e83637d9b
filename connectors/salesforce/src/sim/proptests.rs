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
