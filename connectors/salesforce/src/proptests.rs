//! Property tests of the Salesforce answers the client parses (query pages, updated and deleted
//! results, token answers, describe, the `Sforce-Limit-Info` header, datetimes, Pub/Sub bitmap
//! field lists): any input parses or gives an error, never a panic.

use proptest::prelude::*;

use crate::pubsub::decode_bitmap;
use crate::wire::{
    parse_datetime, ApiUsage, DeletedResult, DescribeSObject, QueryPage, TokenResponse,
    UpdatedResult,
};

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b","[..]),
            Just(&b"\"totalSize\":"[..]),
            Just(&b"\"done\":"[..]),
            Just(&b"\"records\":"[..]),
            Just(&b"\"nextRecordsUrl\":"[..]),
            Just(&b"\"attributes\":{\"type\":\"Contact\",\"url\":\"/x\"}"[..]),
            Just(&b"\"ids\":"[..]),
            Just(&b"\"deletedRecords\":"[..]),
            Just(&b"\"access_token\":"[..]),
            Just(&b"\"instance_url\":"[..]),
            Just(&b"\"fields\":"[..]),
            Just(&b"\"name\":"[..]),
            Just(&b"18446744073709551616"[..]),
            Just(&b"-1"[..]),
            Just(&b"1e999"[..]),
            Just(&b"\"2024-01-01T00:00:00.000+0000\""[..]),
            Just(&b"null"[..]),
            Just(&b"\xff"[..]),
        ]
        .prop_map(<[u8]>::to_vec),
        0..40,
    )
    .prop_map(|p| p.concat())
}

proptest! {
    #[test]
    fn answers_parse_or_err(bytes in prop_oneof![jsonish(), proptest::collection::vec(any::<u8>(), 0..200)]) {
        let _ = serde_json::from_slice::<QueryPage>(&bytes);
        let _ = serde_json::from_slice::<UpdatedResult>(&bytes);
        let _ = serde_json::from_slice::<DeletedResult>(&bytes);
        let _ = serde_json::from_slice::<TokenResponse>(&bytes);
        let _ = serde_json::from_slice::<DescribeSObject>(&bytes);
    }

    #[test]
    fn headers_datetimes_and_bitmaps_take_any_text(s in any::<String>(), n in "[0-9/ ,a-z=-]{0,30}") {
        let _ = parse_datetime(&s);
        if let Some(u) = ApiUsage::parse(&format!("api-usage={n}")) {
            prop_assert_eq!(ApiUsage::parse(&u.header_value()), Some(u));
        }
        let names: Vec<String> = (0..10).map(|i| format!("F{i}")).collect();
        let _ = decode_bitmap(&s, &names);
        let _ = decode_bitmap(&format!("0x{s}"), &names);
        let _ = decode_bitmap(&format!("3-0x{s}"), &names);
    }
}
