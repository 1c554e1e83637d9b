//! The harness the operators' tests share (test builds only): one record's identity as a
//! transform sees it ([`Fixture`]: its [`RecordKey`], its [`Lineage`], and the canonical records
//! it maps to with no field set, for expected values to start from), change events for the
//! dispatch tests ([`event`], [`lineage_of`]), and the two table runners of the per-CRM rule
//! tables: every case maps and passes its check ([`assert_maps`]), every case is rejected under
//! one rule ([`assert_rejects`]).

use std::fmt::Debug;

use super::bullhorn::RecordKey;
use super::Reject;
use crate::model::{Candidate, ChangeEvent, Lineage, Op, Position};

/// 2025-01-01T00:00:00Z: when the test events were observed.
pub const NOW: i64 = 1_735_689_600_000;

/// The identity of the record under test and where it was read from.
pub struct Fixture {
    pub crm: &'static str,
    pub crm_id: &'static str,
    /// Epoch ms.
    pub source_version: i64,
    pub event_id: &'static str,
    pub raw_topic: &'static str,
    pub raw_partition: i32,
    pub raw_offset: i64,
    pub trace_id: Option<&'static str>,
}

impl Fixture {
    /// A record of `crm` read from `raw_topic` (partition 0, offset 0, untraced).
    pub const fn new(
        crm: &'static str,
        crm_id: &'static str,
        source_version: i64,
        raw_topic: &'static str,
    ) -> Self {
        Fixture {
            crm,
            crm_id,
            source_version,
            event_id: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            raw_topic,
            raw_partition: 0,
            raw_offset: 0,
            trace_id: None,
        }
    }

    /// The key a transform receives; `deleted`: the event is a delete.
    pub fn key(&self, deleted: bool) -> RecordKey<'static> {
        RecordKey {
            crm: self.crm,
            crm_id: self.crm_id,
            source_version: self.source_version,
            deleted,
        }
    }

    pub fn lineage(&self) -> Lineage {
        Lineage {
            crm: self.crm.into(),
            crm_id: self.crm_id.into(),
            source_version: self.source_version,
            event_id: self.event_id.into(),
            raw_topic: self.raw_topic.into(),
            raw_partition: self.raw_partition,
            raw_offset: self.raw_offset,
            trace_id: self.trace_id.map(Into::into),
        }
    }

    /// A live candidate of this identity with no field set.
    pub fn candidate(&self) -> Candidate {
        Candidate {
            crm: self.crm.into(),
            crm_id: self.crm_id.into(),
            source_version: self.source_version,
            lineage: self.lineage(),
            ..Default::default()
        }
    }

    /// A live position of this identity with no field set.
    pub fn position(&self) -> Position {
        Position {
            crm: self.crm.into(),
            crm_id: self.crm_id.into(),
            source_version: self.source_version,
            lineage: self.lineage(),
            ..Default::default()
        }
    }
}

/// A change event of `crm`'s `entity` record `id`, observed at [`NOW`].
pub fn event(crm: &str, entity: &str, id: &str, op: Op, record: &str) -> ChangeEvent {
    ChangeEvent::new(
        crm,
        entity,
        id,
        op,
        1_700_000_000_000,
        NOW,
        vec![],
        "poll",
        record.to_owned(),
    )
}

/// The lineage the normalize stage gives `ev` (read from partition 3, offset 99, traced).
pub fn lineage_of(ev: &ChangeEvent) -> Lineage {
    Lineage {
        crm: ev.crm.clone(),
        crm_id: ev.record_id.clone(),
        source_version: ev.source_version,
        event_id: ev.event_id.clone(),
        raw_topic: format!("crm.raw.{}.{}", ev.crm, ev.entity.to_lowercase()),
        raw_partition: 3,
        raw_offset: 99,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    }
}

/// `(case, input, check)`: the input maps, and the check holds for what it maps to.
pub type MapCase<'a, T> = (&'a str, &'a str, fn(&T) -> bool);

/// Maps every case's input with `map` and asserts the case's check.
pub fn assert_maps<T: Debug>(cases: &[MapCase<'_, T>], map: impl Fn(&str) -> Result<T, Reject>) {
    for (name, input, check) in cases {
        let got = map(input).unwrap_or_else(|r| panic!("case {name}: {r}"));
        assert!(check(&got), "case {name}: {got:?}");
    }
}

/// Maps every `(case, input)` with `map` and asserts it is rejected under `rule`; returns the
/// rejects in case order, for checks of their own.
pub fn assert_rejects<T: Debug>(
    cases: &[(&str, &str)],
    rule: &str,
    map: impl Fn(&str) -> Result<T, Reject>,
) -> Vec<Reject> {
    cases
        .iter()
        .map(|(name, input)| match map(input) {
            Ok(got) => panic!("case {name}: mapped to {got:?}, want a {rule} reject"),
            Err(r) => {
                assert_eq!(r.rule, rule, "case {name}: {r}");
                r
            }
        })
        .collect()
}
