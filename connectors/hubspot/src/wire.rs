//! Serde types of the HubSpot CRM v3 documents both sides exchange: objects, list and search pages, search
//! requests, batch reads, property definitions, the OAuth token answer, error bodies and webhook events.
//!
//! The client and the simulator both use them, so they cannot drift apart. Field names follow HubSpot's JSON
//! (camelCase); ids are strings and every property value is a string or `null`, as on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Property values of an object: every value is a string or `null` (HubSpot sends numbers and dates as
/// strings too).
pub type Properties = BTreeMap<String, Option<String>>;

/// A CRM object (`SimplePublicObject` in HubSpot's OpenAPI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmObject {
    /// Object id (a decimal number, as a string).
    pub id: String,
    /// The requested properties (plus the defaults HubSpot always returns).
    #[serde(default)]
    pub properties: Properties,
    /// ISO 8601 creation time, e.g. `2024-01-10T15:03:22.123Z`.
    pub created_at: String,
    /// ISO 8601 last modification time.
    pub updated_at: String,
    /// Whether the object is archived (deleted).
    #[serde(default)]
    pub archived: bool,
    /// ISO 8601 archive time, present on archived objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
}

/// `paging.next` of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextPage {
    /// Opaque cursor for the next page (an offset for search, an id cursor for lists).
    pub after: String,
    /// Link to the next page (lists only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// `paging` of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paging {
    /// Present when there is a next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<NextPage>,
}

/// A page of `GET /crm/v3/objects/{type}` (`CollectionResponseSimplePublicObjectWithAssociationsForwardPaging`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionPage<T> {
    /// The objects of this page.
    pub results: Vec<T>,
    /// Paging; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

impl<T> CollectionPage<T> {
    /// The `after` cursor of the next page, if any.
    pub fn next_after(&self) -> Option<&str> {
        next_after(&self.paging)
    }
}

/// A page of `POST /crm/v3/objects/{type}/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage<T> {
    /// Objects matching the query, in total (not only the reachable first 10,000).
    pub total: u64,
    /// The objects of this page.
    pub results: Vec<T>,
    /// Paging; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paging: Option<Paging>,
}

impl<T> SearchPage<T> {
    /// The `after` cursor of the next page, if any.
    pub fn next_after(&self) -> Option<&str> {
        next_after(&self.paging)
    }
}

fn next_after(p: &Option<Paging>) -> Option<&str> {
    p.as_ref()
        .and_then(|p| p.next.as_ref())
        .map(|n| n.after.as_str())
}

/// Search filter operators HubSpot accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Operator {
    /// Equal.
    Eq,
    /// Not equal.
    Neq,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Between `value` and `highValue`, inclusive.
    Between,
    /// Any of `values`.
    In,
    /// None of `values`.
    NotIn,
    /// The property has a value.
    HasProperty,
    /// The property has no value.
    NotHasProperty,
    /// The value contains the token (wildcards `*` allowed).
    ContainsToken,
    /// The value does not contain the token.
    NotContainsToken,
}

/// One search filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Property filtered on.
    pub property_name: String,
    /// Comparison.
    pub operator: Operator,
    /// Value (dates: epoch milliseconds or ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Upper bound of `BETWEEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_value: Option<String>,
    /// Values of `IN` / `NOT_IN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

impl Filter {
    /// A filter with one value.
    pub fn new(property: impl Into<String>, operator: Operator, value: impl Into<String>) -> Self {
        Self {
            property_name: property.into(),
            operator,
            value: Some(value.into()),
            high_value: None,
            values: None,
        }
    }
}

/// Filters ANDed together; groups are ORed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FilterGroup {
    /// The filters of the group.
    pub filters: Vec<Filter>,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Direction {
    /// Smallest first.
    Ascending,
    /// Largest first.
    Descending,
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sort {
    /// Property sorted on.
    pub property_name: String,
    /// Direction.
    pub direction: Direction,
}

/// Body of `POST /crm/v3/objects/{type}/search` (`PublicObjectSearchRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    /// ORed groups of ANDed filters.
    #[serde(default)]
    pub filter_groups: Vec<FilterGroup>,
    /// Sort keys (HubSpot honours one). Accepted as objects or, as HubSpot's SDKs also send them, as plain
    /// property names (`"createdate"` ascending, `"-createdate"` descending).
    #[serde(default, deserialize_with = "deserialize_sorts")]
    pub sorts: Vec<Sort>,
    /// Free-text query over default searchable properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Properties to return.
    #[serde(default)]
    pub properties: Vec<String>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Offset cursor from the previous page's `paging.next.after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

fn deserialize_sorts<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Sort>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spec {
        Object(Sort),
        Name(String),
    }
    let specs: Option<Vec<Spec>> = Option::deserialize(d)?;
    Ok(specs
        .unwrap_or_default()
        .into_iter()
        .map(|s| match s {
            Spec::Object(o) => o,
            Spec::Name(n) => match n.strip_prefix('-') {
                Some(p) => Sort {
                    property_name: p.to_string(),
                    direction: Direction::Descending,
                },
                None => Sort {
                    property_name: n,
                    direction: Direction::Ascending,
                },
            },
        })
        .collect())
}

/// One id of a batch read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchId {
    /// Object id (or the `idProperty` value).
    pub id: String,
}

/// Body of `POST /crm/v3/objects/{type}/batch/read`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadRequest {
    /// Ids to read (at most 100).
    pub inputs: Vec<BatchId>,
    /// Properties to return.
    #[serde(default)]
    pub properties: Vec<String>,
    /// Properties to return with history.
    #[serde(default)]
    pub properties_with_history: Vec<String>,
    /// Unique property the ids refer to (default: the object id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_property: Option<String>,
}

/// Answer of a batch read: 200 when every id was found, 207 with `errors` otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse<T> {
    /// `COMPLETE`.
    pub status: String,
    /// Objects found.
    pub results: Vec<T>,
    /// Errors (e.g. `OBJECT_NOT_FOUND` with the missing ids in `context.ids`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorBody>,
    /// Number of errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_errors: Option<u32>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
}

/// HubSpot's error document (`{"status":"error","message":..,"correlationId":..,"category":..}`); 429s add
/// `errorType` and `policyName`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// `error` (or an OAuth code such as `BAD_REFRESH_TOKEN`).
    #[serde(default)]
    pub status: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
    /// Request id for HubSpot support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// E.g. `VALIDATION_ERROR`, `INVALID_AUTHENTICATION`, `EXPIRED_AUTHENTICATION`, `RATE_LIMITS`,
    /// `OBJECT_NOT_FOUND`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `RATE_LIMIT` on 429s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// `TEN_SECONDLY_ROLLING`, `SECONDLY` or `DAILY` on 429s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    /// Extra context, e.g. `{"ids":["1"]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// Links to documentation (batch errors carry `{}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<serde_json::Value>,
    /// Nested errors (batch errors carry `[]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<serde_json::Value>>,
}

/// A property definition from `GET /crm/v3/properties/{object}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDef {
    /// Internal name, e.g. `email`.
    pub name: String,
    /// Display label.
    #[serde(default)]
    pub label: String,
    /// `string`, `number`, `date`, `datetime`, `enumeration`, `bool`.
    #[serde(rename = "type")]
    pub kind: String,
    /// UI field type, e.g. `text`, `select`, `number`.
    #[serde(default)]
    pub field_type: String,
    /// Property group.
    #[serde(default)]
    pub group_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Options of an enumeration.
    #[serde(default)]
    pub options: Vec<PropertyOption>,
    /// Whether HubSpot computes the value.
    #[serde(default)]
    pub calculated: bool,
    /// Whether values must be unique.
    #[serde(default)]
    pub has_unique_value: bool,
    /// Hidden in the UI.
    #[serde(default)]
    pub hidden: bool,
    /// `non_sensitive`, `sensitive` or `highly_sensitive`: reading a sensitive property needs the
    /// app's `crm.objects.<object>.sensitive.read` scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sensitivity: Option<String>,
}

/// An option of an enumeration property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyOption {
    /// Stored value.
    pub value: String,
    /// Display label.
    pub label: String,
    /// Display order.
    #[serde(default)]
    pub display_order: i32,
    /// Hidden in the UI.
    #[serde(default)]
    pub hidden: bool,
}

/// `{"results":[..]}` of the properties API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertiesPage {
    /// Property definitions.
    pub results: Vec<PropertyDef>,
}

/// Answer of `POST /oauth/v1/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// `bearer`.
    #[serde(default)]
    pub token_type: String,
    /// New refresh token (HubSpot returns the same long-lived one).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Access token for `Authorization: Bearer`.
    pub access_token: String,
    /// Lifetime of the access token, seconds (1800 on HubSpot).
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// One webhook event as HubSpot POSTs it (in a JSON array of at most 100).
///
/// Legacy subscriptions name the object in the type (`contact.creation`, `deal.propertyChange`); the generic
/// form used for custom objects is `object.creation` etc. with `objectTypeId` (e.g. `2-12345678`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// Event id; not guaranteed unique: de-duplicate on (subscriptionId, eventId, occurredAt, objectId).
    pub event_id: u64,
    /// Subscription that produced it.
    pub subscription_id: u64,
    /// HubSpot account.
    pub portal_id: u64,
    /// App.
    pub app_id: u64,
    /// Epoch milliseconds of the change.
    pub occurred_at: i64,
    /// E.g. `contact.propertyChange`, `object.deletion`.
    pub subscription_type: String,
    /// Delivery attempt, 0 for the first.
    pub attempt_number: u32,
    /// Object id (numeric on the wire).
    pub object_id: u64,
    /// `objectTypeId` of generic (`object.*`) events, e.g. `2-12345678`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_type_id: Option<String>,
    /// Property changed (`propertyChange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_name: Option<String>,
    /// Its new value (`propertyChange`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property_value: Option<String>,
    /// `CREATED` or `DELETED` on creation/deletion events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_flag: Option<String>,
    /// E.g. `CRM_UI`, `API`, `IMPORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_source: Option<String>,
    /// Who made the change, e.g. `userId:45678`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    /// Merge: the surviving object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_object_id: Option<u64>,
    /// Merge: the objects merged into it (they disappear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_object_ids: Option<Vec<u64>>,
    /// Merge: the id of the merged object (the primary's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_object_id: Option<u64>,
    /// Merge: properties moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_properties_moved: Option<u32>,
}

/// The property holding the last-modified time of an object type in search: `lastmodifieddate` for contacts,
/// `hs_lastmodifieddate` for every other object (deals, companies, custom objects).
pub fn modified_property(object_type: &str) -> &'static str {
    match object_type {
        "contacts" | "contact" | "0-1" => "lastmodifieddate",
        _ => "hs_lastmodifieddate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_page_of_the_reference_decodes() {
        let body = r#"{"total":2,"results":[{"id":"101","properties":{"createdate":"2024-01-10T15:03:22.123Z","email":"a@x.com","firstname":"A","hs_object_id":"101","lastmodifieddate":"2024-02-01T10:00:00.000Z","lastname":null},"createdAt":"2024-01-10T15:03:22.123Z","updatedAt":"2024-02-01T10:00:00.000Z","archived":false}],"paging":{"next":{"after":"100"}}}"#;
        let page: SearchPage<CrmObject> = serde_json::from_str(body).expect("decodes");
        assert_eq!(page.total, 2);
        assert_eq!(page.next_after(), Some("100"));
        assert_eq!(page.results[0].properties["lastname"], None);
        assert_eq!(
            page.results[0].properties["email"].as_deref(),
            Some("a@x.com")
        );
    }

    #[test]
    fn search_request_serializes_in_hubspot_shape() {
        let r = SearchRequest {
            filter_groups: vec![FilterGroup {
                filters: vec![Filter::new(
                    "lastmodifieddate",
                    Operator::Gte,
                    "1700000000000",
                )],
            }],
            sorts: vec![Sort {
                property_name: "lastmodifieddate".into(),
                direction: Direction::Ascending,
            }],
            properties: vec!["email".into()],
            limit: Some(100),
            after: Some("0".into()),
            query: None,
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"filterGroups":[{"filters":[{"propertyName":"lastmodifieddate","operator":"GTE","value":"1700000000000"}]}],
              "sorts":[{"propertyName":"lastmodifieddate","direction":"ASCENDING"}],"properties":["email"],"limit":100,"after":"0"})
        );
    }

    #[test]
    fn sorts_are_accepted_as_objects_or_names() {
        let r: SearchRequest = serde_json::from_str(
            r#"{"sorts":["lastmodifieddate","-createdate",{"propertyName":"email","direction":"DESCENDING"}]}"#,
        )
        .expect("decodes");
        let d: Vec<_> = r
            .sorts
            .iter()
            .map(|s| (s.property_name.as_str(), s.direction))
            .collect();
        assert_eq!(
            d,
            vec![
                ("lastmodifieddate", Direction::Ascending),
                ("createdate", Direction::Descending),
                ("email", Direction::Descending)
            ]
        );
        let r: SearchRequest = serde_json::from_str(r#"{"sorts":null}"#).expect("null sorts");
        assert!(r.sorts.is_empty());
    }

    #[test]
    fn rate_limit_body_decodes() {
        let b = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"c","policyName":"TEN_SECONDLY_ROLLING"}"#;
        let e: ErrorBody = serde_json::from_str(b).expect("decodes");
        assert_eq!(e.policy_name.as_deref(), Some("TEN_SECONDLY_ROLLING"));
    }

    #[test]
    fn modified_property_depends_on_the_object() {
        assert_eq!(modified_property("contacts"), "lastmodifieddate");
        assert_eq!(modified_property("deals"), "hs_lastmodifieddate");
        assert_eq!(modified_property("2-12345678"), "hs_lastmodifieddate");
    }

    #[test]
    fn token_response_debug_hides_tokens() {
        let t = TokenResponse {
            token_type: "bearer".into(),
            refresh_token: Some("rt-secret".into()),
            access_token: "at-secret".into(),
            expires_in: 1800,
        };
        let d = format!("{t:?}");
        assert!(!d.contains("secret"), "{d}");
    }
}
