//! The demo's summary: what the simulators hold at the end of the run (their ground truth, one
//! [`SourceCounts`] per entity), what Postgres and the dead-letter topic hold ([`EntityCounts`]),
//! whether the two add up, and how the terminal shows it all. Reading the summary back from
//! Postgres and the dead-letter topic is [`super::readback`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{bullhorn, hubspot, salesforce, HubspotTruth, SourceTruth};
use crate::observe::display::thousands;

/// What the simulator holds for one entity: the ground truth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCounts {
    /// Records, soft-deleted ones included (what a full sync reads).
    pub records: u64,
    /// Soft-deleted records.
    pub deleted: u64,
}

impl SourceCounts {
    /// Counts a simulator's `records`, those that `is_deleted` says are (soft-)deleted apart.
    pub fn tally<T>(records: &[T], is_deleted: impl Fn(&T) -> bool) -> Self {
        SourceCounts {
            records: records.len() as u64,
            deleted: records.iter().filter(|r| is_deleted(r)).count() as u64,
        }
    }

    /// These counts plus `other`'s (a simulator the demo did not run adds nothing).
    pub fn plus(&self, other: Option<&SourceCounts>) -> SourceCounts {
        let other = other.cloned().unwrap_or_default();
        SourceCounts {
            records: self.records + other.records,
            deleted: self.deleted + other.deleted,
        }
    }
}

/// What Postgres and the dead-letter topic hold for one entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityCounts {
    /// Rows in the table (tombstones included).
    pub rows: i64,
    /// Rows without `deleted_at`.
    pub live: i64,
    /// Rows with `deleted_at`.
    pub tombstoned: i64,
    /// Vectors of the configured model.
    pub vectors: i64,
    /// Distinct records dead-lettered by normalize or sink (so they have no row).
    pub dead_lettered: i64,
    /// Distinct records dead-lettered by embed (a row, but no vector).
    pub not_embedded: i64,
    /// Rows per CRM (`bullhorn`, `hubspot`).
    #[serde(default)]
    pub rows_by_crm: BTreeMap<String, i64>,
}

/// Dead letters of one (stage, rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    pub stage: String,
    /// The rule that rejected the record, or the error class when no rule was named.
    pub rule: String,
    pub count: u64,
    /// One example reason.
    pub example: String,
}

/// One matched candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchedCandidate {
    pub rank: i32,
    pub candidate_id: String,
    pub name: String,
    pub score: f32,
    /// The candidate's occupation, so a reader can judge the match.
    #[serde(default)]
    pub occupation: Option<String>,
    /// The candidate's first few skills.
    #[serde(default)]
    pub skills: Vec<String>,
}

/// The best candidates for one position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionMatches {
    pub position_id: String,
    pub title: String,
    pub candidates: Vec<MatchedCandidate>,
}

/// What the demo prints at the end (and writes with `--summary-json`): read back from Postgres
/// and the dead-letter topic, not from the stages' in-process counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub topic_prefix: String,
    pub schema: String,
    pub model: String,
    /// Wall time of the pipeline (start of `run` to its end).
    pub elapsed_seconds: f64,
    /// The one-shot run caught up (false for --keep-running and interrupted runs).
    pub caught_up: bool,
    pub source: SourceTruth,
    /// The HubSpot simulator, when the demo ran one.
    #[serde(default)]
    pub hubspot: Option<HubspotTruth>,
    /// The Salesforce simulator, when the demo ran one.
    #[serde(default)]
    pub salesforce: Option<salesforce::SalesforceTruth>,
    pub candidates: EntityCounts,
    pub positions: EntityCounts,
    /// Rows in `matches` for the model (both directions).
    pub matches: i64,
    /// Dead letters written during this run.
    pub dead_letters: u64,
    /// By stage and rule, largest first.
    pub dead_letters_by_rule: Vec<RuleCount>,
    /// Candidate and position rows per second of pipeline time.
    pub records_per_second: f64,
    /// Every record is a row or a dead letter, and every live row has a vector or a dead letter.
    pub complete: bool,
    /// Top 3 candidates for up to 3 positions (open ones first).
    pub top_matches: Vec<PositionMatches>,
}

impl Summary {
    pub(super) fn entity_complete(c: &EntityCounts, source: &SourceCounts) -> bool {
        (c.rows + c.dead_lettered) as u64 == source.records && c.vectors + c.not_embedded == c.live
    }

    /// Candidate records of every simulator: Bullhorn candidates, HubSpot and Salesforce contacts.
    pub fn candidate_records(&self) -> SourceCounts {
        self.source
            .candidates
            .plus(self.hubspot.as_ref().map(|h| &h.contacts))
            .plus(self.salesforce.as_ref().map(|s| &s.contacts))
    }

    /// Position records of every simulator: Bullhorn job orders, HubSpot jobs, Salesforce positions.
    pub fn position_records(&self) -> SourceCounts {
        self.source
            .job_orders
            .plus(self.hubspot.as_ref().map(|h| &h.jobs))
            .plus(self.salesforce.as_ref().map(|s| &s.positions))
    }

    /// Whether Postgres accounts for every record of the simulators.
    pub fn is_complete(&self) -> bool {
        Self::entity_complete(&self.candidates, &self.candidate_records())
            && Self::entity_complete(&self.positions, &self.position_records())
    }

    /// The summary as the terminal shows it.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let n = |v: i64| thousands(v);
        let _ = writeln!(o, "\n== crmflow demo summary ==");
        let _ = writeln!(
            o,
            "{:<22}{:.1} s, {} rows into Postgres, {} records/s{}",
            "time",
            self.elapsed_seconds,
            n(self.candidates.rows + self.positions.rows),
            n(self.records_per_second.round() as i64),
            if self.caught_up {
                ""
            } else {
                " (over the whole run, idle time included)"
            }
        );
        let _ = writeln!(o, "{}", bullhorn::render_line(&self.source));
        if let Some(h) = &self.hubspot {
            let _ = writeln!(o, "{}", hubspot::render_line(h));
        }
        if let Some(sf) = &self.salesforce {
            let _ = writeln!(o, "{}", salesforce::render_line(sf));
        }
        let (cand, pos) = (self.candidate_records(), self.position_records());
        for (label, c, s) in [
            ("candidates", &self.candidates, &cand),
            ("positions", &self.positions, &pos),
        ] {
            let accounted = c.rows + c.dead_lettered;
            let check = if accounted as u64 == s.records {
                "all accounted for".to_owned()
            } else {
                format!("{} behind", n(s.records as i64 - accounted))
            };
            let _ = writeln!(
                o,
                "{label:<22}{} rows ({} live, {} tombstoned) + {} dead-lettered = {} of {} records: {check}",
                n(c.rows),
                n(c.live),
                n(c.tombstoned),
                n(c.dead_lettered),
                n(accounted),
                n(s.records as i64),
            );
            if c.rows_by_crm.len() > 1 {
                let per: Vec<String> = c
                    .rows_by_crm
                    .iter()
                    .map(|(crm, rows)| format!("{crm} {}", n(*rows)))
                    .collect();
                let _ = writeln!(o, "{:<22}rows by CRM: {}", "", per.join(", "));
            }
        }
        let _ = writeln!(
            o,
            "{:<22}{} candidates, {} positions ({}; not embedded: {} + {})",
            "vectors",
            n(self.candidates.vectors),
            n(self.positions.vectors),
            self.model,
            n(self.candidates.not_embedded),
            n(self.positions.not_embedded)
        );
        let _ = writeln!(o, "{:<22}{}", "matches", n(self.matches));
        let _ = writeln!(o, "{:<22}{}", "dead letters", n(self.dead_letters as i64));
        for r in &self.dead_letters_by_rule {
            let example: String = r.example.chars().take(60).collect();
            let _ = writeln!(
                o,
                "  {:>7}  {:<10} {:<32} e.g. {example}",
                n(r.count as i64),
                r.stage,
                r.rule
            );
        }
        let _ = writeln!(
            o,
            "{:<22}{}",
            "complete",
            if self.complete {
                "yes: every record is a row or a dead letter, every live row has a vector"
            } else if self.caught_up {
                "NO: Postgres does not account for every record"
            } else {
                "not checked (the pipeline was stopped while changes were flowing)"
            }
        );
        let _ = writeln!(o, "\n== top matches ==");
        if self.top_matches.is_empty() {
            let _ = writeln!(o, "  (no matches yet)");
        }
        for p in &self.top_matches {
            let _ = writeln!(o, "  {} (position {})", p.title, p.position_id);
            for c in &p.candidates {
                let _ = writeln!(
                    o,
                    "    {}. {:.3}  {} (candidate {}) — {}{}{}",
                    c.rank,
                    c.score,
                    c.name,
                    c.candidate_id,
                    c.occupation.as_deref().unwrap_or("(no occupation)"),
                    if c.skills.is_empty() { "" } else { "; " },
                    c.skills.join(", ")
                );
            }
        }
        let _ = writeln!(
            o,
            "\nnamespace: topics {}*, schema {}",
            self.topic_prefix, self.schema
        );
        o
    }
}
