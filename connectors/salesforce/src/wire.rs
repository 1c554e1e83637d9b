//! Serde types of the REST documents client and simulator exchange, and Salesforce's datetime format.
//!
//! Salesforce writes datetimes as `2024-01-01T00:00:00.000+0000` and accepts ISO 8601 in query strings
//! (`2024-01-01T00:00:00Z`, `+00:00`) and unquoted in SOQL.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Default REST API version (`vXX.X` without the `v`).
pub const DEFAULT_API_VERSION: &str = "62.0";
/// Most records one composite retrieve may ask for.
pub const MAX_COMPOSITE_IDS: usize = 2000;
/// Largest query batch (`Sforce-Query-Options: batchSize=N`).
pub const MAX_BATCH_SIZE: usize = 2000;
/// Header carrying the org's API usage, `api-usage=N/M`.
pub const LIMIT_INFO_HEADER: &str = "Sforce-Limit-Info";
/// Header setting the query batch size.
pub const QUERY_OPTIONS_HEADER: &str = "Sforce-Query-Options";

/// `2024-01-01T00:00:00.000+0000`.
pub fn format_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// `2024-01-01T00:00:00Z`: the form used in SOQL literals and query strings.
pub fn format_iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses the datetime forms Salesforce writes or accepts: `...000+0000`, `...Z`, `...+00:00`, with or without
/// fractional seconds, and a plain date (midnight UTC).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(Utc.from_utc_datetime(&t));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// `attributes` of every record in a REST answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attributes {
    /// Object name, e.g. `Contact`.
    #[serde(rename = "type")]
    pub sobject: String,
    /// `/services/data/vXX.X/sobjects/{type}/{id}`.
    pub url: String,
}

/// One page of `query` / `queryAll`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage {
    /// Rows the whole query matches (for `COUNT()`, the count).
    pub total_size: u64,
    /// Whether this is the last page.
    pub done: bool,
    /// Path of the next page (`/services/data/vXX.X/query/01g...-2000`) when not done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_records_url: Option<String>,
    /// Records, each with `attributes` and the selected fields.
    pub records: Vec<Map<String, Value>>,
}

/// One page of `query` / `queryAll` with each record left as its JSON text (what a sync reads: it takes
/// the keys it pages by from the last record, sends the next query, and handles the records while that
/// one is answered; a record can go on unchanged, as received).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawQueryPage {
    /// Rows the whole query matches.
    pub total_size: u64,
    /// Whether this is the last page.
    pub done: bool,
    /// Path of the next page when not done.
    #[serde(default)]
    pub next_records_url: Option<String>,
    /// Records, as received.
    pub records: Vec<Box<serde_json::value::RawValue>>,
}

/// The fields of a record a sync pages and versions by, read from its JSON text without building the
/// rest of the record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RecordKey {
    /// `Id`.
    #[serde(rename = "Id")]
    pub id: String,
    /// `SystemModstamp` as written (`None` when not selected or null).
    #[serde(rename = "SystemModstamp", default)]
    pub system_modstamp: Option<String>,
    /// `IsDeleted` (`None` when not selected or null).
    #[serde(rename = "IsDeleted", default)]
    pub is_deleted: Option<bool>,
}

impl RecordKey {
    /// The key of one record's JSON text.
    pub fn of(raw: &serde_json::value::RawValue) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw.get())
    }
}

/// `sobjects/{type}/updated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedResult {
    /// Ids changed within the window.
    pub ids: Vec<String>,
    /// The window's covered end: the next call's `start`.
    pub latest_date_covered: String,
}

/// One entry of `deletedRecords`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecord {
    /// Record id.
    pub id: String,
    /// When it was deleted.
    pub deleted_date: String,
}

/// `sobjects/{type}/deleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedResult {
    /// Deletions within the window.
    pub deleted_records: Vec<DeletedRecord>,
    /// Oldest deletion the org still remembers; later than the asked `start` means deletions were lost.
    pub earliest_date_available: String,
    /// The window's covered end.
    pub latest_date_covered: String,
}

/// One element of a REST error answer (always a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorItem {
    /// Human-readable message.
    pub message: String,
    /// `INVALID_SESSION_ID`, `MALFORMED_QUERY`, `REQUEST_LIMIT_EXCEEDED`, ...
    pub error_code: String,
    /// Fields concerned, when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

/// Body of `POST composite/sobjects/{type}` (retrieve by ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompositeRetrieve {
    /// Up to 2,000 ids of one object type.
    pub ids: Vec<String>,
    /// Fields to return.
    pub fields: Vec<String>,
}

/// Successful `/services/oauth2/token` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Session id to send as `Authorization: Bearer`.
    pub access_token: String,
    /// `https://{MyDomain}.my.salesforce.com`.
    pub instance_url: String,
    /// Identity URL `https://login.salesforce.com/id/{orgId}/{userId}`.
    #[serde(default)]
    pub id: Option<String>,
    /// `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scope: Option<String>,
    /// Epoch milliseconds as a string (absent in some JWT answers).
    #[serde(default)]
    pub issued_at: Option<String>,
    /// HMAC of id + issued_at (absent in some JWT answers).
    #[serde(default)]
    pub signature: Option<String>,
}

/// Failed `/services/oauth2/token` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// `invalid_grant`, `invalid_client_id`, `invalid_client`, `unsupported_grant_type`, ...
    pub error: String,
    /// Explanation.
    #[serde(default)]
    pub error_description: String,
}

/// One field of `sobjects/{type}/describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeField {
    /// API name.
    pub name: String,
    /// Label.
    pub label: String,
    /// `id`, `string`, `email`, `phone`, `textarea`, `picklist`, `reference`, `datetime`, `date`, `boolean`,
    /// `double`.
    #[serde(rename = "type")]
    pub field_type: String,
    /// Whether it may be null.
    pub nillable: bool,
    /// Maximum length of text fields (0 for others).
    #[serde(default)]
    pub length: u32,
    /// Whether it is a custom field (`__c`).
    #[serde(default)]
    pub custom: bool,
}

/// `sobjects/{type}/describe` (the part crmflow reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeSObject {
    /// API name.
    pub name: String,
    /// Label.
    pub label: String,
    /// Key prefix of its ids.
    pub key_prefix: String,
    /// Whether it is a custom object.
    #[serde(default)]
    pub custom: bool,
    /// Fields.
    pub fields: Vec<DescribeField>,
}

/// API usage from `Sforce-Limit-Info: api-usage=N/M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    /// Requests used in the last 24 hours.
    pub used: u64,
    /// The org's daily allowance.
    pub max: u64,
}

impl ApiUsage {
    /// Parses the header value (`api-usage=25/15000`, possibly among other comma-separated items).
    pub fn parse(header: &str) -> Option<Self> {
        header.split(',').find_map(|part| {
            let v = part.trim().strip_prefix("api-usage=")?;
            let (used, max) = v.split_once('/')?;
            Some(Self {
                used: used.trim().parse().ok()?,
                max: max.trim().parse().ok()?,
            })
        })
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        format!("api-usage={}/{}", self.used, self.max)
    }

    /// Used share of the allowance (1.0 when `max` is 0).
    pub fn share(&self) -> f64 {
        if self.max == 0 {
            1.0
        } else {
            self.used as f64 / self.max as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_pages_keep_records_as_sent() {
        let body = r#"{"totalSize":3,"done":false,"nextRecordsUrl":"/services/data/v62.0/queryAll/01gX-2",
"records":[{"attributes":{"type":"Contact","url":"/x"},"Id":"003A","SystemModstamp":"2024-01-01T00:00:00.000+0000","IsDeleted":false,"Name":"a \"b\""},
{"attributes":{"type":"Contact","url":"/y"},"Name":null,"IsDeleted":true,"Id":"003B","SystemModstamp":"2024-01-01T00:00:00.001+0000"}]}"#;
        let p: RawQueryPage = serde_json::from_str(body).unwrap();
        assert_eq!((p.total_size, p.done), (3, false));
        assert_eq!(
            p.next_records_url.as_deref(),
            Some("/services/data/v62.0/queryAll/01gX-2")
        );
        assert_eq!(p.records.len(), 2);
        // Byte for byte what was sent, key order and escapes included.
        assert_eq!(
            p.records[1].get(),
            r#"{"attributes":{"type":"Contact","url":"/y"},"Name":null,"IsDeleted":true,"Id":"003B","SystemModstamp":"2024-01-01T00:00:00.001+0000"}"#
        );
        let k = RecordKey::of(&p.records[1]).unwrap();
        assert_eq!(
            k,
            RecordKey {
                id: "003B".into(),
                system_modstamp: Some("2024-01-01T00:00:00.001+0000".into()),
                is_deleted: Some(true),
            }
        );
        // Fields not selected or null are None; a record without an id is an error.
        let raw = serde_json::value::RawValue::from_string(
            r#"{"Id":"003C","SystemModstamp":null}"#.into(),
        )
        .unwrap();
        let k = RecordKey::of(&raw).unwrap();
        assert_eq!((k.system_modstamp, k.is_deleted), (None, None));
        let raw = serde_json::value::RawValue::from_string(r#"{"Name":"x"}"#.into()).unwrap();
        assert!(RecordKey::of(&raw).is_err());
        let done: RawQueryPage =
            serde_json::from_str(r#"{"totalSize":0,"done":true,"records":[]}"#).unwrap();
        assert!(done.done && done.next_records_url.is_none() && done.records.is_empty());
    }

    #[test]
    fn datetime_round_trip() {
        let cases = [
            ("2024-01-01T00:00:00.000+0000", 1_704_067_200_000),
            ("2024-01-01T00:00:00Z", 1_704_067_200_000),
            ("2024-01-01T00:00:00+00:00", 1_704_067_200_000),
            ("2024-01-01T01:00:00.250+0100", 1_704_067_200_250),
            ("2024-01-01", 1_704_067_200_000),
        ];
        for (s, ms) in cases {
            let t = parse_datetime(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(t.timestamp_millis(), ms, "{s}");
        }
        let t = parse_datetime("2024-01-01T00:00:00.000+0000").unwrap();
        assert_eq!(format_datetime(t), "2024-01-01T00:00:00.000+0000");
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn limit_info_header() {
        let u = ApiUsage::parse("api-usage=25/15000").unwrap();
        assert_eq!(
            u,
            ApiUsage {
                used: 25,
                max: 15000
            }
        );
        assert_eq!(
            ApiUsage::parse("per-app-api-usage=1/2, api-usage=3/4")
                .unwrap()
                .used,
            3
        );
        assert_eq!(ApiUsage::parse("nonsense"), None);
        assert_eq!(u.header_value(), "api-usage=25/15000");
    }

    #[test]
    fn error_array_shape() {
        let v: Vec<ApiErrorItem> = serde_json::from_str(
            r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        )
        .unwrap();
        assert_eq!(v[0].error_code, "INVALID_SESSION_ID");
    }
}
