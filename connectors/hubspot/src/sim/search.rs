//! CRM search as HubSpot does it, over the search index (which trails writes and holds no archived object).
//!
//! Validation first: `limit` above the page maximum, `after` at or past the 10,000-result cap, too many filter
//! groups or filters, or a filter on an unknown property are 400 `VALIDATION_ERROR`s. Then filters (groups
//! ORed, filters ANDed; values compared by the property's kind: date-times as epoch ms whether given as digits
//! or ISO 8601, numbers as numbers, text case-insensitively), one sort key with the id as tiebreaker, and an
//! offset page: `paging.next.after` is the next offset, and is still given when it reaches the cap, so a
//! client that follows it gets the 400.

use std::cmp::Ordering;
use std::sync::Arc;

use super::error::ApiError;
use super::schema::{PropKind, TypeDef};
use super::store::{parse_time, Record};
use crate::wire::{Direction, Filter, Operator, SearchRequest};

/// Search limits (HubSpot's [C] 10,000 cap, and the [U] page maximum).
#[derive(Debug, Clone, Copy)]
pub struct SearchLimits {
    /// Largest `limit`.
    pub page_max: u32,
    /// Results reachable per query.
    pub result_cap: u64,
    /// Page size when `limit` is absent.
    pub default_limit: u32,
}

/// Filter groups allowed per request.
pub const MAX_GROUPS: usize = 5;
/// Filters allowed per group.
pub const MAX_FILTERS_PER_GROUP: usize = 10;
/// Filters allowed per request.
pub const MAX_FILTERS: usize = 25;

/// A comparable value.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Int(i64),
    Num(f64),
    Text(String),
}

fn key_of(def: &TypeDef, kind: PropKind, r: &Record, name: &str) -> Option<Key> {
    if name == def.modified_prop {
        return Some(Key::Int(r.updated_ms));
    }
    if name == def.created_prop {
        return Some(Key::Int(r.created_ms));
    }
    if name == "hs_object_id" {
        return Some(Key::Int(r.id as i64));
    }
    let v = r.props.get(name)?;
    parse_key(kind, v)
}

fn parse_key(kind: PropKind, v: &str) -> Option<Key> {
    match kind {
        PropKind::DateTime => parse_time(v).map(Key::Int),
        PropKind::Number => v.trim().parse::<f64>().ok().map(Key::Num),
        PropKind::String | PropKind::Enumeration => Some(Key::Text(v.trim().to_lowercase())),
    }
}

fn cmp_keys(a: &Key, b: &Key) -> Option<Ordering> {
    match (a, b) {
        (Key::Int(x), Key::Int(y)) => Some(x.cmp(y)),
        (Key::Num(x), Key::Num(y)) => x.partial_cmp(y),
        (Key::Int(x), Key::Num(y)) => (*x as f64).partial_cmp(y),
        (Key::Num(x), Key::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Key::Text(x), Key::Text(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

struct Compiled<'a> {
    name: &'a str,
    kind: PropKind,
    op: Operator,
    value: Option<Key>,
    high: Option<Key>,
    values: Vec<Key>,
    token: Option<String>,
}

fn compile<'a>(def: &TypeDef, f: &'a Filter) -> Result<Compiled<'a>, ApiError> {
    let p = def.prop(&f.property_name).ok_or_else(|| {
        ApiError::validation(format!(
            "There was a problem with the request. Property \"{}\" does not exist on object type {}",
            f.property_name, def.object_type_id
        ))
    })?;
    let kind = if f.property_name == "hs_object_id" {
        PropKind::Number
    } else {
        p.kind
    };
    let parse = |v: &Option<String>, what: &str| -> Result<Option<Key>, ApiError> {
        match v {
            None => Ok(None),
            Some(s) => parse_key(kind, s).map(Some).ok_or_else(|| {
                ApiError::validation(format!(
                    "There was a problem with the request. Invalid {what} '{s}' for property {}",
                    f.property_name
                ))
            }),
        }
    };
    let value = parse(&f.value, "value")?;
    let high = parse(&f.high_value, "highValue")?;
    let values = f
        .values
        .iter()
        .flatten()
        .map(|v| {
            parse_key(kind, v).ok_or_else(|| {
                ApiError::validation(format!(
                    "There was a problem with the request. Invalid value '{v}' for property {}",
                    f.property_name
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let needs_value = !matches!(
        f.operator,
        Operator::HasProperty | Operator::NotHasProperty | Operator::In | Operator::NotIn
    );
    if needs_value && value.is_none() {
        return Err(ApiError::validation(format!(
            "There was a problem with the request. Operator {:?} on {} needs a value",
            f.operator, f.property_name
        )));
    }
    if f.operator == Operator::Between && high.is_none() {
        return Err(ApiError::validation(
            "There was a problem with the request. BETWEEN needs highValue",
        ));
    }
    Ok(Compiled {
        name: f.property_name.as_str(),
        kind,
        op: f.operator,
        token: f.value.as_ref().map(|v| v.trim().to_lowercase()),
        value,
        high,
        values,
    })
}

fn token_match(text: &str, token: &str) -> bool {
    let t = token.trim_matches('*');
    if t.is_empty() {
        return true;
    }
    let text = text.to_lowercase();
    if token.starts_with('*') || token.ends_with('*') {
        text.contains(t)
    } else {
        text.split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
            .any(|w| w == t)
            || text == t
    }
}

fn matches(def: &TypeDef, r: &Record, f: &Compiled<'_>) -> bool {
    let got = key_of(def, f.kind, r, f.name);
    let cmp = |k: &Option<Key>| -> Option<Ordering> {
        match (&got, k) {
            (Some(a), Some(b)) => cmp_keys(a, b),
            _ => None,
        }
    };
    match f.op {
        Operator::HasProperty => got.is_some(),
        Operator::NotHasProperty => got.is_none(),
        Operator::Eq => cmp(&f.value) == Some(Ordering::Equal),
        Operator::Neq => cmp(&f.value) != Some(Ordering::Equal),
        Operator::Lt => cmp(&f.value) == Some(Ordering::Less),
        Operator::Lte => matches!(cmp(&f.value), Some(Ordering::Less | Ordering::Equal)),
        Operator::Gt => cmp(&f.value) == Some(Ordering::Greater),
        Operator::Gte => matches!(cmp(&f.value), Some(Ordering::Greater | Ordering::Equal)),
        Operator::Between => {
            matches!(cmp(&f.value), Some(Ordering::Greater | Ordering::Equal))
                && matches!(cmp(&f.high), Some(Ordering::Less | Ordering::Equal))
        }
        Operator::In => got.as_ref().is_some_and(|g| {
            f.values
                .iter()
                .any(|v| cmp_keys(g, v) == Some(Ordering::Equal))
        }),
        Operator::NotIn => !got.as_ref().is_some_and(|g| {
            f.values
                .iter()
                .any(|v| cmp_keys(g, v) == Some(Ordering::Equal))
        }),
        Operator::ContainsToken | Operator::NotContainsToken => {
            let text = super::store::Db::value(def, r, f.name);
            let hit = match (&text, &f.token) {
                (Some(t), Some(tok)) => token_match(t, tok),
                _ => false,
            };
            (f.op == Operator::ContainsToken) == hit
        }
    }
}

/// One search answer before rendering.
pub struct Hits {
    /// Objects matching, in total.
    pub total: u64,
    /// This page's objects.
    pub page: Vec<Arc<Record>>,
    /// Offset of the next page.
    pub next_after: Option<u64>,
}

/// Checks `limit` and `after` against the limits; returns them.
pub fn paging(req: &SearchRequest, limits: SearchLimits) -> Result<(u32, u64), ApiError> {
    let limit = req.limit.unwrap_or(limits.default_limit);
    if limit > limits.page_max {
        return Err(ApiError::validation(format!(
            "There was a problem with the request. limit: must be less than or equal to {}",
            limits.page_max
        )));
    }
    let after: u64 = match req.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(a) => a.parse().map_err(|_| {
            ApiError::validation(format!(
                "There was a problem with the request. Invalid after '{a}'"
            ))
        })?,
    };
    if after >= limits.result_cap {
        return Err(ApiError::validation(format!(
            "There was a problem with the request. Search results are limited to {} results; after {after} is past the end",
            limits.result_cap
        )));
    }
    Ok((limit, after))
}

/// Every object of `index` (ascending id order) matching the filters and the free-text query, sorted by the
/// first sort key with the id as tiebreaker.
pub fn matching<'a>(
    def: &TypeDef,
    index: impl Iterator<Item = &'a Arc<Record>>,
    req: &SearchRequest,
) -> Result<Vec<Arc<Record>>, ApiError> {
    let groups = &req.filter_groups;
    let total_filters: usize = groups.iter().map(|g| g.filters.len()).sum();
    if groups.len() > MAX_GROUPS
        || groups
            .iter()
            .any(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
        || total_filters > MAX_FILTERS
    {
        return Err(ApiError::validation(format!(
            "There was a problem with the request. At most {MAX_GROUPS} filterGroups of {MAX_FILTERS_PER_GROUP} filters, {MAX_FILTERS} filters in total"
        )));
    }
    let compiled: Vec<Vec<Compiled<'_>>> = groups
        .iter()
        .map(|g| g.filters.iter().map(|f| compile(def, f)).collect())
        .collect::<Result<_, _>>()?;
    let sort = match req.sorts.first() {
        Some(s) => {
            let p = def.prop(&s.property_name).ok_or_else(|| {
                ApiError::validation(format!(
                    "There was a problem with the request. Cannot sort on unknown property {}",
                    s.property_name
                ))
            })?;
            Some((p.name, p.kind, s.direction))
        }
        None => None,
    };
    let query = req
        .query
        .as_deref()
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    let hits: Vec<&Arc<Record>> = index
        .filter(|r| {
            (compiled.is_empty()
                || compiled
                    .iter()
                    .any(|g| g.iter().all(|f| matches(def, r, f))))
                && query.as_ref().is_none_or(|q| {
                    def.text_props.iter().any(|p| {
                        r.props
                            .get(*p)
                            .is_some_and(|v| v.to_lowercase().contains(q.as_str()))
                    })
                })
        })
        .collect();
    let Some((name, kind, dir)) = sort else {
        return Ok(hits.into_iter().cloned().collect());
    };
    let mut keyed: Vec<(Option<Key>, &Arc<Record>)> = hits
        .into_iter()
        .map(|r| (key_of(def, kind, r, name), r))
        .collect();
    keyed.sort_by(|(ka, a), (kb, b)| {
        let o = match (ka, kb) {
            (Some(x), Some(y)) => cmp_keys(x, y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let o = if dir == Direction::Descending {
            o.reverse()
        } else {
            o
        };
        o.then(a.id.cmp(&b.id))
    });
    Ok(keyed.into_iter().map(|(_, r)| Arc::clone(r)).collect())
}

/// The page at offset `after` of the sorted `hits`, cut at the result cap; `next_after` still points at the
/// cap when more results exist.
pub fn page(hits: &[Arc<Record>], limit: u32, after: u64, limits: SearchLimits) -> Hits {
    let total = hits.len() as u64;
    let start = after.min(total) as usize;
    let end = (after + u64::from(limit)).min(total).min(limits.result_cap) as usize;
    let page = hits[start..end.max(start)].to_vec();
    let next_after = ((end as u64) < total && limit > 0).then_some(end as u64);
    Hits {
        total,
        page,
        next_after,
    }
}

/// Runs `req` over `index` (ascending id order): paging checks, matching, one page.
#[cfg(test)]
pub fn search<'a>(
    def: &TypeDef,
    index: impl Iterator<Item = &'a Arc<Record>>,
    req: &SearchRequest,
    limits: SearchLimits,
) -> Result<Hits, ApiError> {
    let (limit, after) = paging(req, limits)?;
    let hits = matching(def, index, req)?;
    Ok(page(&hits, limit, after, limits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::schema::types;
    use crate::wire::{FilterGroup, Sort};
    use std::collections::BTreeMap;

    fn rec(id: u64, updated: i64, email: Option<&str>) -> Arc<Record> {
        let mut props = BTreeMap::new();
        if let Some(e) = email {
            props.insert("email".to_string(), e.to_string());
        }
        props.insert("years_experience".to_string(), (id % 7).to_string());
        Arc::new(Record {
            id,
            props,
            created_ms: 0,
            updated_ms: updated,
            archived: false,
            archived_ms: None,
        })
    }

    const LIMITS: SearchLimits = SearchLimits {
        page_max: 100,
        result_cap: 10_000,
        default_limit: 10,
    };

    fn req(filters: Vec<Filter>, limit: u32, after: Option<&str>) -> SearchRequest {
        SearchRequest {
            filter_groups: if filters.is_empty() {
                vec![]
            } else {
                vec![FilterGroup { filters }]
            },
            sorts: vec![Sort {
                property_name: "lastmodifieddate".into(),
                direction: Direction::Ascending,
            }],
            query: None,
            properties: vec![],
            limit: Some(limit),
            after: after.map(str::to_string),
        }
    }

    #[test]
    fn filters_sort_ties_by_id_and_page() {
        let t = &types("2-1", 1)[0];
        let recs: Vec<_> = (1..=30)
            .map(|i| rec(i, 1_000 + (30 - i as i64) / 3, Some(&format!("u{i}@x.com"))))
            .collect();
        let r = req(
            vec![Filter::new("lastmodifieddate", Operator::Gte, "1004")],
            4,
            None,
        );
        let h = search(t, recs.iter(), &r, LIMITS).expect("ok");
        // updated >= 1004 ⇔ (30 - i) / 3 >= 4 ⇔ i <= 18
        assert_eq!(h.total, 18);
        let ids: Vec<u64> = h.page.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![16, 17, 18, 13], "oldest first, ties by id");
        assert_eq!(h.next_after, Some(4));
        let iso = req(
            vec![Filter::new(
                "lastmodifieddate",
                Operator::Gte,
                "1970-01-01T00:00:01.004Z",
            )],
            100,
            None,
        );
        assert_eq!(search(t, recs.iter(), &iso, LIMITS).expect("ok").total, 18);
        let last = search(t, recs.iter(), &req(vec![], 100, Some("28")), LIMITS).expect("ok");
        assert_eq!(last.page.len(), 2);
        assert_eq!(last.next_after, None);
    }

    #[test]
    fn the_result_cap_and_page_maximum_are_400s() {
        let t = &types("2-1", 1)[0];
        let recs: Vec<_> = (1..=150).map(|i| rec(i, i as i64, None)).collect();
        let cap = SearchLimits {
            result_cap: 100,
            ..LIMITS
        };
        let h = search(t, recs.iter(), &req(vec![], 60, Some("60")), cap).expect("ok");
        assert_eq!(h.page.len(), 40, "the page stops at the cap");
        assert_eq!(h.next_after, Some(100), "and still points past it");
        let e = search(t, recs.iter(), &req(vec![], 10, Some("100")), cap)
            .err()
            .expect("400");
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(e.body.category.as_deref(), Some("VALIDATION_ERROR"));
        let e = search(t, recs.iter(), &req(vec![], 101, None), LIMITS)
            .err()
            .expect("400");
        assert_eq!(e.status.as_u16(), 400);
        let bad = req(vec![Filter::new("nope", Operator::Eq, "1")], 10, None);
        assert!(search(t, recs.iter(), &bad, LIMITS).is_err());
    }

    #[test]
    fn operators() {
        let t = &types("2-1", 1)[0];
        let recs = [
            rec(1, 1, Some("Ann@Example.com")),
            rec(2, 2, None),
            rec(3, 3, Some("bob@example.com")),
        ];
        let count = |f: Filter| {
            search(t, recs.iter(), &req(vec![f], 100, None), LIMITS)
                .expect("ok")
                .total
        };
        assert_eq!(
            count(Filter::new("email", Operator::Eq, "ann@example.com")),
            1
        );
        assert_eq!(
            count(Filter::new("email", Operator::Neq, "ann@example.com")),
            2
        );
        let mut has = Filter::new("email", Operator::HasProperty, "");
        has.value = None;
        assert_eq!(count(has.clone()), 2);
        has.operator = Operator::NotHasProperty;
        assert_eq!(count(has), 1);
        let mut between = Filter::new("hs_object_id", Operator::Between, "2");
        between.high_value = Some("3".into());
        assert_eq!(count(between), 2);
        let mut inn = Filter::new("email", Operator::In, "");
        inn.value = None;
        inn.values = Some(vec!["BOB@example.com".into(), "x".into()]);
        assert_eq!(count(inn), 1);
        assert_eq!(
            count(Filter::new("email", Operator::ContainsToken, "*example*")),
            2
        );
        assert_eq!(
            count(Filter::new("years_experience", Operator::Gt, "1.5")),
            2
        );
    }
}
