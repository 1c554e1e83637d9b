//! Bullhorn REST wire types shared by the client and the simulator.
//!
//! Every struct here mirrors a JSON document that the real Bullhorn API sends or accepts (see
//! `shared/reference/crm-apis.md`, sections 1-4). Both sides of the wire use these types so that a change to a
//! field name breaks the client and the simulator together at compile time instead of silently drifting apart.
//! Entity records themselves stay `serde_json::Value`: their shape depends on the `fields` selection.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET {BULLHORN_REST_URL}/loginInfo?username=` answer: where this API user's data center lives.
///
/// Only `oauthUrl` and `restUrl` matter to a client; the rest is kept so captured documents round-trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginInfo {
    /// ATS (classic UI) host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ats_url: Option<String>,
    /// Core services URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_url: Option<String>,
    /// OAuth base; already ends in `/oauth` (the client appends `/authorize` and `/token`).
    pub oauth_url: String,
    /// REST base without corp token and without trailing slash (the client appends `/login`).
    pub rest_url: String,
    /// Numeric data-center id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_center_id: Option<i64>,
    /// Numeric super-cluster id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub super_cluster_id: Option<i64>,
}

/// Successful `POST {oauthUrl}/token` answer (authorization-code and refresh grants alike).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Access token, form `n:uuid`; valid for `expires_in` seconds and used once for `/login`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access-token lifetime in seconds (600 on real Bullhorn).
    pub expires_in: u64,
    /// Single-use refresh token: every refresh returns a new one and invalidates the old.
    pub refresh_token: String,
}

/// OAuth error document, e.g. `{"error":"invalid_grant","error_description":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthError {
    /// Machine-readable code: `invalid_grant`, `invalid_client`, `invalid_request`, `unsupported_grant_type`.
    pub error: String,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// `GET|POST {restUrl}/login?version=*&access_token=..` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Session token sent back as `BhRestToken` (query parameter, header or cookie).
    #[serde(rename = "BhRestToken")]
    pub bh_rest_token: String,
    /// Session base URL, ending in `/rest-services/{corpToken}/`; every REST path is relative to it.
    #[serde(rename = "restUrl")]
    pub rest_url: String,
}

/// `GET {restUrl}ping` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PingResponse {
    /// When the session expires, epoch milliseconds.
    pub session_expires: i64,
}

/// `GET {restUrl}logout` answer: `{"logout":"OK"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogoutResponse {
    /// `OK` on success.
    pub logout: String,
}

/// Bullhorn's error envelope, e.g. the 401 for a bad session:
/// `{"errorMessage":"Bad 'BhRestToken' or timed-out.","errorMessageKey":"errors.authentication.invalidRestToken","errorCode":401}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEnvelope {
    /// Human-readable message.
    pub error_message: String,
    /// Stable key, e.g. `errors.authentication.invalidRestToken`; clients match on this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message_key: Option<String>,
    /// The HTTP status repeated in the body.
    pub error_code: u16,
}

/// `errorMessageKey` of the 401 answered for a missing, invalid or expired session token.
pub const INVALID_REST_TOKEN_KEY: &str = "errors.authentication.invalidRestToken";
/// `errorMessage` of the 401 answered for an invalid or expired session token (exact Bullhorn text).
pub const INVALID_REST_TOKEN_MESSAGE: &str = "Bad 'BhRestToken' or timed-out.";
/// `errorMessageKey` of the 400 answered by `/login` for a bad OAuth access token.
pub const INVALID_OAUTH_TOKEN_KEY: &str = "errors.authentication.invalidOAuthToken";
/// Largest `count` Bullhorn serves in one page.
pub const MAX_PAGE_COUNT: usize = 500;

/// List envelope of `search`, `query` and to-many sub-resources: `{"total":N,"start":S,"count":C,"data":[..]}`.
///
/// `/query` sends `total` only with `showTotalMatched=true`, hence the `Option`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEnvelope<T = Value> {
    /// Number of matching records in the whole result (not just this page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Offset of the first record of this page.
    #[serde(default)]
    pub start: u64,
    /// Number of records in this page (`data.len()`).
    #[serde(default)]
    pub count: u64,
    /// The records; search hits carry `_score`.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

/// Single-entity (or id-list) read: `{"data":{...}}` or `{"data":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataEnvelope<T = Value> {
    /// The record or records.
    pub data: T,
}

/// `GET meta/{entity}`: the entity's fields as the API user sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMeta {
    /// Entity name, e.g. `Candidate`.
    pub entity: String,
    /// Its fields.
    #[serde(default)]
    pub fields: Vec<MetaField>,
}

/// One field of [`EntityMeta`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaField {
    /// API name, e.g. `customText2`.
    pub name: String,
    /// `ID`, `SCALAR`, `COMPOSITE`, `TO_ONE`, `TO_MANY`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `String`, `Integer`, `BigDecimal`, `Double`, `Boolean`, `Timestamp`, `Address`, ...
    #[serde(default)]
    pub data_type: String,
    /// The tenant's label, e.g. `Visa status`.
    #[serde(default)]
    pub label: String,
    /// A confidential field: its value needs an entitlement the API user may lack.
    #[serde(default)]
    pub confidential: bool,
}

/// Inline to-many association shape: `{"total":3,"data":[{"id":1,"name":"..."}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToMany<T = Value> {
    /// Number of associated records (may exceed `data.len()`, which is capped at 5 by default and 10 at most).
    pub total: u64,
    /// The first associated records.
    pub data: Vec<T>,
}

/// What a write did, as reported by `changeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChangeType {
    /// `PUT entity/{Type}` created a record.
    Insert,
    /// `POST entity/{Type}/{id}` changed a record.
    Update,
    /// `DELETE entity/{Type}/{id}` (soft or hard) removed a record.
    Delete,
}

/// Answer to a write: `{"changedEntityType":"Candidate","changedEntityId":422157,"changeType":"INSERT","data":{..}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResponse {
    /// Entity name.
    pub changed_entity_type: String,
    /// Id of the record written.
    pub changed_entity_id: i64,
    /// What happened.
    pub change_type: ChangeType,
    /// The fields that were written (empty object for deletes).
    #[serde(default)]
    pub data: Value,
}

/// Answer to `PUT event/subscription/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionCreated {
    /// The subscription id chosen by the client.
    pub subscription_id: String,
    /// JMS selector Bullhorn built from `names` and `eventTypes`.
    pub jms_selector: String,
    /// Last request id handed out so far (0 for a new subscription).
    pub last_request_id: u64,
    /// Creation time, epoch milliseconds.
    pub created_on: i64,
}

/// Answer to `GET event/subscription/{id}?maxEvents=N` (and to a `requestId` re-get).
///
/// An empty poll may be an empty body instead (Bullhorn behaviour is unconfirmed), so clients should treat a
/// zero-length 200 as "no events".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventBatch {
    /// Id of this batch; pass it back as `requestId` to fetch the same batch again.
    pub request_id: u64,
    /// The events, oldest first. Several may concern the same entity.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// Kind of entity change carried by an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EntityEventType {
    /// Record created.
    Inserted,
    /// Record changed; `updatedProperties` says which fields.
    Updated,
    /// Record deleted.
    Deleted,
}

/// One entity event of a subscription batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Opaque string id, e.g. `ID:JBM-40000002`.
    pub event_id: String,
    /// Always `ENTITY` for entity subscriptions.
    pub event_type: String,
    /// When the change happened, epoch milliseconds.
    pub event_timestamp: i64,
    /// Free-form string metadata (`PERSON_ID`, `TRANSACTION_ID`, `CHANGE_HISTORY_ID`).
    #[serde(default)]
    pub event_metadata: std::collections::BTreeMap<String, String>,
    /// Entity name, e.g. `Candidate`.
    pub entity_name: String,
    /// Id of the changed record.
    pub entity_id: i64,
    /// What happened.
    pub entity_event_type: EntityEventType,
    /// Changed fields; present on UPDATED events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_properties: Option<Vec<String>>,
}

/// Generic `{"result":X}` answer (`lastRequestId`, subscription delete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultResponse<T> {
    /// The result value.
    pub result: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_token_response() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"access_token":"5:a6477004-44ee-4d22-a7e8-58105a6a4bef","token_type":"Bearer","expires_in":600,"refresh_token":"5:3daca6ef-6d12-4db4-b6d3-8da8a7a27b11"}"#,
        )
        .expect("token response");
        assert_eq!(t.expires_in, 600);
        assert!(t.refresh_token.starts_with("5:"));
    }

    #[test]
    fn parses_captured_event_batch() {
        let b: EventBatch = serde_json::from_str(
            r#"{"requestId":1,"events":[{"eventId":"ID:JBM-40000002","eventType":"ENTITY","eventTimestamp":1574142912400,
            "eventMetadata":{"CHANGE_HISTORY_ID":"11","TRANSACTION_ID":"1c7b","PERSON_ID":"3"},
            "entityName":"Candidate","entityId":6,"entityEventType":"UPDATED","updatedProperties":["email"]}]}"#,
        )
        .expect("event batch");
        assert_eq!(b.events[0].entity_event_type, EntityEventType::Updated);
        assert_eq!(
            b.events[0].updated_properties.as_deref(),
            Some(&["email".to_string()][..])
        );
    }

    #[test]
    fn error_envelope_matches_bullhorn_text() {
        let e = ErrorEnvelope {
            error_message: INVALID_REST_TOKEN_MESSAGE.into(),
            error_message_key: Some(INVALID_REST_TOKEN_KEY.into()),
            error_code: 401,
        };
        assert_eq!(
            serde_json::to_string(&e).expect("serialize"),
            r#"{"errorMessage":"Bad 'BhRestToken' or timed-out.","errorMessageKey":"errors.authentication.invalidRestToken","errorCode":401}"#
        );
    }

    #[test]
    fn query_envelope_without_total() {
        let l: ListEnvelope =
            serde_json::from_str(r#"{"start":0,"count":1,"data":[{"id":1}]}"#).expect("envelope");
        assert_eq!(l.total, None);
        assert_eq!(l.count, 1);
    }
}
