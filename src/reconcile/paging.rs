//! What every CRM's lister shares (pure, no I/O): the id ranges a listing is split into so they
//! can be listed concurrently, clipping a page to its range, reading a numeric resume id, and the
//! bookkeeping of re-reads (which reason a record is re-sent for, which ids a read by id found).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::diff::{IdOrder, Listed};
use super::{Finding, Kind, ReconcileError};

/// One stretch of an entity's id space: ids after `after` (exclusive; `None` = from the start)
/// through `through` (inclusive; `None` = no end, so ids created during the run are seen).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub after: Option<String>,
    pub through: Option<String>,
}

impl IdRange {
    /// The whole id space.
    pub fn all() -> Self {
        Self {
            after: None,
            through: None,
        }
    }
}

/// Splits numeric ids `1..=max` into `n` consecutive ranges of (nearly) equal width; the last has
/// no end. `max` 0 or `n` 1: one range of everything.
pub fn numeric_ranges(max: u64, n: usize) -> Vec<IdRange> {
    let n = n.max(1) as u64;
    if max == 0 || n == 1 {
        return vec![IdRange::all()];
    }
    let n = n.min(max);
    let width = max.div_ceil(n);
    let mut out = Vec::with_capacity(n as usize);
    let mut after: Option<u64> = None;
    for i in 0..n {
        let through = (i + 1 < n).then(|| ((i + 1) * width).min(max));
        if let (Some(a), Some(t)) = (after, through) {
            if t <= a {
                continue;
            }
        }
        out.push(IdRange {
            after: after.map(|a| a.to_string()),
            through: through.map(|t| t.to_string()),
        });
        after = through;
    }
    out
}

/// Drops the ids of `page` past `through`; `true` when some were dropped (the listing has passed
/// the range's end, so the range is fully listed).
pub fn clip(order: IdOrder, page: &mut Vec<Listed>, through: Option<&str>) -> bool {
    let Some(through) = through else {
        return false;
    };
    let keep = page
        .iter()
        .take_while(|l| order.cmp(&l.id, through) != std::cmp::Ordering::Greater)
        .count();
    let clipped = keep < page.len();
    page.truncate(keep);
    clipped
}

/// A resume id of a CRM with numeric ids.
pub fn numeric_after(
    crm: &str,
    entity: &str,
    after: Option<&str>,
) -> Result<Option<u64>, ReconcileError> {
    after
        .map(|a| {
            a.parse().map_err(|_| {
                ReconcileError::Config(format!("{crm} {entity}: resume id {a:?} is not a number"))
            })
        })
        .transpose()
}

/// The ids of `findings` and the `crmflow.reason` each is re-sent for.
pub struct Rereads<'a> {
    pub ids: Vec<String>,
    missing: HashSet<&'a str>,
}

impl<'a> Rereads<'a> {
    pub fn new(findings: &'a [Finding]) -> Self {
        Self {
            ids: findings.iter().map(|f| f.id.clone()).collect(),
            missing: findings
                .iter()
                .filter(|f| f.kind == Kind::Missing)
                .map(|f| f.id.as_str())
                .collect(),
        }
    }

    /// `reconcile.missing` or `reconcile.stale`.
    pub fn reason(&self, id: &str) -> &'static str {
        if self.missing.contains(id) {
            "reconcile.missing"
        } else {
            "reconcile.stale"
        }
    }

    /// Whether `id` was asked for (a merged-away id can answer with its survivor).
    pub fn wanted(&self, id: &str) -> bool {
        self.ids.iter().any(|i| i == id)
    }
}

/// Of `ids`, those in `found` (a read by id), in the order of `ids`.
pub fn present<'a>(ids: &[String], found: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let found: HashSet<&str> = found.into_iter().collect();
    ids.iter()
        .filter(|i| found.contains(i.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(after: Option<&str>, through: Option<&str>) -> IdRange {
        IdRange {
            after: after.map(Into::into),
            through: through.map(Into::into),
        }
    }

    #[test]
    fn numeric_ranges_cover_the_span_without_overlap() {
        assert_eq!(numeric_ranges(0, 4), vec![IdRange::all()]);
        assert_eq!(numeric_ranges(1_000, 1), vec![IdRange::all()]);
        assert_eq!(
            numeric_ranges(1_000, 4),
            vec![
                r(None, Some("250")),
                r(Some("250"), Some("500")),
                r(Some("500"), Some("750")),
                r(Some("750"), None),
            ]
        );
        // Fewer ids than ranges: one id each, the last open.
        assert_eq!(
            numeric_ranges(2, 16),
            vec![r(None, Some("1")), r(Some("1"), None)]
        );
        // Uneven widths still chain each range's end to the next one's start.
        let got = numeric_ranges(1_001, 16);
        assert_eq!(got.len(), 16);
        assert_eq!(got[0].after, None);
        assert_eq!(got[15].through, None);
        for w in got.windows(2) {
            assert_eq!(w[0].through, w[1].after);
        }
    }

    fn l(id: &str) -> Listed {
        Listed {
            id: id.into(),
            version: 1,
            deleted: false,
        }
    }

    #[test]
    fn clip_keeps_the_range() {
        let mut page = vec![l("9"), l("10"), l("11")];
        assert!(!clip(IdOrder::Numeric, &mut page, None));
        assert_eq!(page.len(), 3);
        assert!(!clip(IdOrder::Numeric, &mut page, Some("11")));
        assert_eq!(page.len(), 3);
        assert!(clip(IdOrder::Numeric, &mut page, Some("10")));
        assert_eq!(page, vec![l("9"), l("10")]);
        let mut text = vec![l("001A"), l("001B"), l("001C")];
        assert!(clip(IdOrder::Text, &mut text, Some("001Azz")));
        assert_eq!(text, vec![l("001A")]);
    }

    #[test]
    fn numeric_resume_ids() {
        assert_eq!(numeric_after("x", "E", None).unwrap(), None);
        assert_eq!(numeric_after("x", "E", Some("42")).unwrap(), Some(42));
        assert!(numeric_after("x", "E", Some("4a")).is_err());
    }

    #[test]
    fn rereads_and_presence() {
        let f = |id: &str, kind| Finding {
            id: id.into(),
            kind,
            crm_version: Some(1),
            pg_version: None,
        };
        let findings = vec![f("1", Kind::Missing), f("2", Kind::Stale)];
        let r = Rereads::new(&findings);
        assert_eq!(r.ids, vec!["1", "2"]);
        assert_eq!(r.reason("1"), "reconcile.missing");
        assert_eq!(r.reason("2"), "reconcile.stale");
        assert!(r.wanted("2") && !r.wanted("3"));
        let ids: Vec<String> = vec!["1".into(), "2".into(), "3".into()];
        assert_eq!(present(&ids, ["3", "1", "9"]), vec!["1", "3"]);
    }
}
