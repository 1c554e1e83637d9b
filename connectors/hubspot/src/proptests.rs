//! Property tests of what HubSpot (or anyone pretending to be it) sends: webhook bodies, the
//! signature and timestamp headers, URIs as the ingress signs them, and CRM object JSON. Parsing
//! never panics; signatures verify only for the exact method, URI, body and timestamp signed.

use std::time::Duration;

use proptest::prelude::*;

use crate::signature::{decode_uri_for_signature, sign_v3, verify_v3, SignatureError};
use crate::wire::{CollectionPage, CrmObject, SearchPage, WebhookEvent};

const AGE: Duration = Duration::from_secs(300);
const NOW: i64 = 1_764_000_000_000;

fn webhook_event() -> impl Strategy<Value = WebhookEvent> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<i64>(),
        ),
        (".{0,30}", any::<u32>(), any::<u64>()),
        proptest::option::of(".{0,12}"),
        proptest::option::of(".{0,12}"),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(proptest::collection::vec(any::<u64>(), 0..4)),
    )
        .prop_map(
            |(ids, kind, type_id, prop, value, primary, merged)| WebhookEvent {
                event_id: ids.0,
                subscription_id: ids.1,
                portal_id: ids.2,
                app_id: ids.3,
                occurred_at: ids.4,
                subscription_type: kind.0,
                attempt_number: kind.1,
                object_id: kind.2,
                object_type_id: type_id,
                property_name: prop,
                property_value: value,
                change_flag: None,
                change_source: Some("CRM_UI".into()),
                source_id: None,
                primary_object_id: primary,
                merged_object_ids: merged,
                new_object_id: primary,
                number_of_properties_moved: None,
            },
        )
}

/// JSON-ish bytes: fragments of real bodies glued with junk, so the parser gets deep inside.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b","[..]),
            Just(&b"\"eventId\":"[..]),
            Just(&b"\"objectId\":"[..]),
            Just(&b"\"occurredAt\":"[..]),
            Just(&b"\"subscriptionType\":\"contact.creation\""[..]),
            Just(&b"\"mergedObjectIds\":["[..]),
            Just(&b"18446744073709551616"[..]),
            Just(&b"-1"[..]),
            Just(&b"1e999"[..]),
            Just(&b"\"\\ud800\""[..]),
            Just(&b"null"[..]),
            Just(&b"\xff\xfe"[..]),
        ]
        .prop_map(<[u8]>::to_vec),
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {

    #[test]
    fn uri_decoding_takes_any_text(s in any::<String>(), pre in "(%[0-9A-Fa-f]{0,2}){0,3}") {
        let input = format!("{pre}{s}");
        let once = decode_uri_for_signature(&input);
        // Only escapes are decoded, so the text never grows.
        prop_assert!(once.len() <= input.len());
    }

    #[test]
    fn signatures_verify_only_what_was_signed(
        secret in proptest::collection::vec(any::<u8>(), 0..64),
        method in "[A-Z]{1,7}",
        uri in ".{0,60}",
        body in proptest::collection::vec(any::<u8>(), 0..200),
        skew in -299_000i64..299_000,
        flip in any::<prop::sample::Index>(),
    ) {
        let ts = (NOW - skew).to_string();
        let sig = sign_v3(&secret, &method, &uri, &body, &ts);
        prop_assert_eq!(verify_v3(&secret, &method, &uri, &body, &ts, &sig, NOW, AGE), Ok(()));
        let mut other = body.clone();
        if other.is_empty() {
            other.push(b'x');
        } else {
            let i = flip.index(other.len());
            other[i] ^= 1;
        }
        prop_assert_eq!(
            verify_v3(&secret, &method, &uri, &other, &ts, &sig, NOW, AGE),
            Err(SignatureError::Mismatch)
        );
        let later = (NOW - skew + 1).to_string();
        prop_assert_eq!(
            verify_v3(&secret, &method, &uri, &body, &later, &sig, NOW, AGE),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn old_or_future_timestamps_are_stale_whatever_the_signature(
        off in prop_oneof![300_001i64..i64::MAX / 2, i64::MIN / 2..-300_001],
        sig in any::<String>(),
    ) {
        let ts = (NOW - off).to_string();
        let got = verify_v3(b"s", "POST", "https://x/y", b"[]", &ts, &sig, NOW, AGE);
        prop_assert!(matches!(got, Err(SignatureError::Stale { .. })), "{got:?}");
    }

    #[test]
    fn any_headers_are_refused_without_panic(ts in any::<String>(), sig in any::<String>()) {
        let got = verify_v3(b"s", "POST", "https://x/y", b"[]", &ts, &sig, NOW, AGE);
        prop_assert!(got.is_err());
    }

    #[test]
    fn webhook_bodies_parse_or_err(bytes in prop_oneof![jsonish(), proptest::collection::vec(any::<u8>(), 0..200)]) {
        let _ = serde_json::from_slice::<Vec<WebhookEvent>>(&bytes);
        let _ = serde_json::from_slice::<CrmObject>(&bytes);
        let _ = serde_json::from_slice::<SearchPage<CrmObject>>(&bytes);
        let _ = serde_json::from_slice::<CollectionPage<CrmObject>>(&bytes);
    }

    #[test]
    fn webhook_events_round_trip(events in proptest::collection::vec(webhook_event(), 0..5)) {
        let body = serde_json::to_vec(&events).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Vec<WebhookEvent>>(&body).unwrap(), events);
    }
}

#[test]
fn percent_before_a_multibyte_character_is_kept() {
    // `%` then one ASCII byte then a two-byte character: the 3-byte window cut the character
    // in half and the ingress panicked on the request.
    assert_eq!(decode_uri_for_signature("/a?q=%aé"), "/a?q=%aé");
    assert_eq!(decode_uri_for_signature("%é%3A"), "%é:");
    assert_eq!(decode_uri_for_signature("%"), "%");
}
