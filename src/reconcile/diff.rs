//! The pure part of reconciliation: given one stretch of a CRM's id listing and the Postgres rows of
//! the same id range, both sorted in the same id order, say what differs. No I/O, no clock: the
//! engine ([`super::engine`]) feeds it pages and acts on what it returns.
//!
//! | CRM                 | Postgres                     | finding                               |
//! |---------------------|------------------------------|---------------------------------------|
//! | live, version v     | absent                       | `missing` (or `in_dlq` if the DLQ holds v or newer) |
//! | live or deleted, v  | older version, other state   | `stale` (or `in_dlq`)                 |
//! | any, v              | newer version                | `newer_in_pg` (report only)           |
//! | deleted, v          | absent or tombstone          | nothing                               |
//! | absent              | live row                     | `gone`                                |
//! | absent              | tombstone                    | nothing                               |
//!
//! Equal versions are equal records: the sink never replaces a row with the same version, so there
//! is nothing a repair could change.

use std::cmp::Ordering;

use serde::Serialize;

/// How a CRM's ids sort in its listing; Postgres must be read in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdOrder {
    /// Decimal integers without leading zeros (Bullhorn, HubSpot): numeric order, which for such
    /// strings is (length, bytes).
    Numeric,
    /// Byte order of the id text (Salesforce's 18-character ids).
    Text,
}

impl IdOrder {
    /// Compares two ids in this order.
    pub fn cmp(self, a: &str, b: &str) -> Ordering {
        match self {
            IdOrder::Numeric => (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())),
            IdOrder::Text => a.as_bytes().cmp(b.as_bytes()),
        }
    }

    /// Whether `ids` is strictly increasing in this order (a listing that is not cannot be merged
    /// against Postgres: every record out of place would look missing and gone at once).
    pub fn is_sorted<'a>(self, mut ids: impl Iterator<Item = &'a str>) -> bool {
        let Some(mut prev) = ids.next() else {
            return true;
        };
        for id in ids {
            if self.cmp(prev, id) != Ordering::Less {
                return false;
            }
            prev = id;
        }
        true
    }
}

/// One record as the CRM lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    /// The CRM's version, epoch ms (Bullhorn `dateLastModified`).
    pub version: i64,
    /// Soft-deleted (or archived) in the CRM.
    pub deleted: bool,
}

/// One row as Postgres holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    pub version: i64,
    /// A tombstone (`deleted_at` set).
    pub deleted: bool,
}

/// What kind of difference a finding is (the `kind` label of `crmflow_reconcile_drift_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// In the CRM, not in Postgres: re-read and emit.
    Missing,
    /// Postgres holds an older version: re-read and emit.
    Stale,
    /// In Postgres, no longer in the CRM (hard delete, merge loser, permanent delete): tombstone.
    Gone,
    /// Postgres holds a newer version than the CRM (clock skew, a restore): reported, never repaired.
    NewerInPg,
    /// Missing or stale, but the DLQ holds this version or a newer one: known, not drift.
    InDlq,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 5] = [
        Kind::Missing,
        Kind::Stale,
        Kind::Gone,
        Kind::NewerInPg,
        Kind::InDlq,
    ];

    /// The metric label and JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Stale => "stale",
            Kind::Gone => "gone",
            Kind::NewerInPg => "newer_in_pg",
            Kind::InDlq => "in_dlq",
        }
    }

    /// Whether a repair event is sent for it.
    pub fn repaired(self) -> bool {
        matches!(self, Kind::Missing | Kind::Stale | Kind::Gone)
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    pub kind: Kind,
    /// The CRM's version (absent for `gone`).
    pub crm_version: Option<i64>,
    /// Postgres's version (absent for `missing`).
    pub pg_version: Option<i64>,
}

/// Classifies one id given what each side holds; `dlq` is the newest version of it the DLQ holds.
pub fn classify(
    crm: Option<&Listed>,
    pg: Option<&Stored>,
    dlq: Option<i64>,
) -> Option<(Kind, Option<i64>, Option<i64>)> {
    let kind = match (crm, pg) {
        (None, None) => return None,
        (None, Some(p)) if p.deleted => return None,
        (None, Some(_)) => Kind::Gone,
        (Some(c), None) if c.deleted => return None,
        (Some(_), None) => Kind::Missing,
        (Some(c), Some(p)) => match p.version.cmp(&c.version) {
            Ordering::Equal => return None,
            Ordering::Greater => Kind::NewerInPg,
            // An older tombstone of a record deleted since changes nothing worth a repair.
            Ordering::Less if p.deleted && c.deleted => return None,
            Ordering::Less => Kind::Stale,
        },
    };
    let kind = match (kind, crm, dlq) {
        (Kind::Missing | Kind::Stale, Some(c), Some(d)) if d >= c.version => Kind::InDlq,
        _ => kind,
    };
    Some((kind, crm.map(|c| c.version), pg.map(|p| p.version)))
}

/// Merges one stretch of the CRM listing with the Postgres rows of the same id range (both sorted in
/// `order`) and returns the differences in id order. `dlq(id)` gives the newest version the DLQ holds.
pub fn diff(
    order: IdOrder,
    crm: &[Listed],
    pg: &[Stored],
    dlq: impl Fn(&str) -> Option<i64>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let (c, p) = match (crm.get(i), pg.get(j)) {
            (None, None) => break,
            (Some(c), None) => {
                i += 1;
                (Some(c), None)
            }
            (None, Some(p)) => {
                j += 1;
                (None, Some(p))
            }
            (Some(c), Some(p)) => match order.cmp(&c.id, &p.id) {
                Ordering::Less => {
                    i += 1;
                    (Some(c), None)
                }
                Ordering::Greater => {
                    j += 1;
                    (None, Some(p))
                }
                Ordering::Equal => {
                    i += 1;
                    j += 1;
                    (Some(c), Some(p))
                }
            },
        };
        let id = c.map(|c| &c.id).or(p.map(|p| &p.id)).expect("one side");
        if let Some((kind, crm_version, pg_version)) = classify(c, p, dlq(id)) {
            out.push(Finding {
                id: id.clone(),
                kind,
                crm_version,
                pg_version,
            });
        }
    }
    out
}

/// The version a tombstone for a `gone` record carries: the deletion time is unknown, so "now", but
/// always past the stored version so the sink's version guard lets it through.
pub fn tombstone_version(pg_version: i64, now_ms: i64) -> i64 {
    now_ms.max(pg_version.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(id: &str, version: i64, deleted: bool) -> Listed {
        Listed {
            id: id.into(),
            version,
            deleted,
        }
    }
    fn s(id: &str, version: i64, deleted: bool) -> Stored {
        Stored {
            id: id.into(),
            version,
            deleted,
        }
    }

    #[test]
    fn classify_table() {
        use Kind::*;
        type Case = (Option<Listed>, Option<Stored>, Option<i64>, Option<Kind>);
        let cases: Vec<Case> = vec![
            // CRM only.
            (Some(l("1", 10, false)), None, None, Some(Missing)),
            (Some(l("1", 10, true)), None, None, None),
            (Some(l("1", 10, false)), None, Some(10), Some(InDlq)),
            (Some(l("1", 10, false)), None, Some(9), Some(Missing)),
            // Both.
            (Some(l("1", 10, false)), Some(s("1", 10, false)), None, None),
            (
                Some(l("1", 10, false)),
                Some(s("1", 9, false)),
                None,
                Some(Stale),
            ),
            (
                Some(l("1", 10, true)),
                Some(s("1", 9, false)),
                None,
                Some(Stale),
            ),
            (
                Some(l("1", 10, false)),
                Some(s("1", 9, true)),
                None,
                Some(Stale),
            ),
            (Some(l("1", 10, true)), Some(s("1", 9, true)), None, None),
            (
                Some(l("1", 10, false)),
                Some(s("1", 9, false)),
                Some(12),
                Some(InDlq),
            ),
            (
                Some(l("1", 10, false)),
                Some(s("1", 11, false)),
                None,
                Some(NewerInPg),
            ),
            (
                Some(l("1", 10, false)),
                Some(s("1", 11, true)),
                Some(20),
                Some(NewerInPg),
            ),
            // Equal versions: nothing a repair could change.
            (Some(l("1", 10, true)), Some(s("1", 10, false)), None, None),
            // Postgres only.
            (None, Some(s("1", 10, false)), None, Some(Gone)),
            (None, Some(s("1", 10, true)), None, None),
            (None, Some(s("1", 10, false)), Some(99), Some(Gone)),
            (None, None, None, None),
        ];
        for (n, (c, p, d, want)) in cases.into_iter().enumerate() {
            let got = classify(c.as_ref(), p.as_ref(), d).map(|k| k.0);
            assert_eq!(got, want, "case {n}: {c:?} {p:?} dlq {d:?}");
        }
    }

    #[test]
    fn diff_merges_interleaved_streams_in_numeric_order() {
        let crm = vec![
            l("2", 5, false),
            l("9", 7, false),
            l("10", 7, false),
            l("11", 3, true),
            l("100", 1, false),
        ];
        let pg = vec![
            s("1", 4, false),
            s("9", 6, false),
            s("10", 8, false),
            s("12", 2, true),
            s("13", 2, false),
            s("100", 1, false),
        ];
        let got: Vec<(String, Kind)> =
            diff(IdOrder::Numeric, &crm, &pg, |id| (id == "2").then_some(5))
                .into_iter()
                .map(|f| (f.id, f.kind))
                .collect();
        let want: Vec<(String, Kind)> = vec![
            ("1".into(), Kind::Gone),
            ("2".into(), Kind::InDlq),
            ("9".into(), Kind::Stale),
            ("10".into(), Kind::NewerInPg),
            ("13".into(), Kind::Gone),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn diff_of_empty_sides() {
        assert!(diff(IdOrder::Text, &[], &[], |_| None).is_empty());
        let all_missing = diff(
            IdOrder::Text,
            &[l("a", 1, false), l("b", 1, false)],
            &[],
            |_| None,
        );
        assert_eq!(all_missing.len(), 2);
        assert!(all_missing.iter().all(|f| f.kind == Kind::Missing));
        let all_gone = diff(IdOrder::Text, &[], &[s("a", 1, false)], |_| None);
        assert_eq!(all_gone[0].kind, Kind::Gone);
        assert_eq!(all_gone[0].crm_version, None);
        assert_eq!(all_gone[0].pg_version, Some(1));
    }

    #[test]
    fn id_orders() {
        assert_eq!(IdOrder::Numeric.cmp("9", "10"), Ordering::Less);
        assert_eq!(IdOrder::Numeric.cmp("10", "9"), Ordering::Greater);
        assert_eq!(IdOrder::Numeric.cmp("12", "12"), Ordering::Equal);
        assert_eq!(IdOrder::Text.cmp("9", "10"), Ordering::Greater);
        assert_eq!(
            IdOrder::Text.cmp("003000000000001AAA", "003000000000001aaa"),
            Ordering::Less
        );
        assert!(IdOrder::Numeric.is_sorted(["1", "2", "10"].into_iter()));
        assert!(!IdOrder::Numeric.is_sorted(["1", "10", "2"].into_iter()));
        assert!(!IdOrder::Numeric.is_sorted(["1", "1"].into_iter()));
        assert!(IdOrder::Text.is_sorted(["1", "10", "2"].into_iter()));
    }

    #[test]
    fn tombstones_pass_the_version_guard() {
        assert_eq!(tombstone_version(100, 1_000), 1_000);
        assert_eq!(tombstone_version(5_000, 1_000), 5_001);
        assert_eq!(tombstone_version(i64::MAX, 0), i64::MAX);
    }
}
