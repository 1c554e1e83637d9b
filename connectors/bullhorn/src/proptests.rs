//! Property tests of the Bullhorn JSON the client parses (search/query pages, entity reads, event
//! batches, login and token answers, error envelopes): any bytes and JSON-shaped junk parse or
//! give an error, never a panic.

use proptest::prelude::*;

use crate::wire::{
    DataEnvelope, ErrorEnvelope, EventBatch, ListEnvelope, LoginResponse, TokenResponse,
};

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b","[..]),
            Just(&b"\"data\":"[..]),
            Just(&b"\"total\":"[..]),
            Just(&b"\"start\":"[..]),
            Just(&b"\"count\":"[..]),
            Just(&b"\"events\":"[..]),
            Just(&b"\"requestId\":"[..]),
            Just(&b"\"entityId\":"[..]),
            Just(&b"\"entityEventType\":\"UPDATED\""[..]),
            Just(&b"\"updatedProperties\":"[..]),
            Just(&b"\"BhRestToken\":"[..]),
            Just(&b"\"restUrl\":"[..]),
            Just(&b"\"access_token\":"[..]),
            Just(&b"\"expires_in\":"[..]),
            Just(&b"\"errorMessage\":"[..]),
            Just(&b"\"errorCode\":"[..]),
            Just(&b"18446744073709551616"[..]),
            Just(&b"-1"[..]),
            Just(&b"1e999"[..]),
            Just(&b"\"x\""[..]),
            Just(&b"null"[..]),
            Just(&b"\"\\ud800\""[..]),
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
        let _ = serde_json::from_slice::<ListEnvelope>(&bytes);
        let _ = serde_json::from_slice::<DataEnvelope>(&bytes);
        let _ = serde_json::from_slice::<EventBatch>(&bytes);
        let _ = serde_json::from_slice::<LoginResponse>(&bytes);
        let _ = serde_json::from_slice::<TokenResponse>(&bytes);
        let _ = serde_json::from_slice::<ErrorEnvelope>(&bytes);
    }
}
