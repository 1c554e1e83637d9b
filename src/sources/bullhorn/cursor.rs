//! The poller's cursor arithmetic, pure and table-tested: the `(dateLastModified, id)` cursor, the Lucene
//! query that reads strictly after it (through ties), the split of a backlog into `dateLastModified`
//! sub-ranges, and the committed point of several sub-ranges progressing at once.
//!
//! Ties: Bullhorn stamps bulk imports with one millisecond, so a cursor on the timestamp alone either repeats
//! or skips records. The query asks for `dateLastModified > ts OR (dateLastModified = ts AND id > cursor id)`
//! — written `dateLastModified:[ts TO hi} AND (dateLastModified:{ts TO *] OR id:{id TO *])` so the timestamp
//! bound stays a top-level range the index can use — and sorts by `dateLastModified,id`, so every page
//! starts exactly after the previous one's last record, wherever the page boundary falls in a tie. Records at
//! or before the cursor are also dropped client-side ([`Cursor::is_before`]), in case a server ignores the
//! `id` clause. `start` offsets are never used to page (a moving result set shifts under them); they only
//! pick split points, and a bad split point costs balance, not correctness.

use serde::{Deserialize, Serialize};

/// Everything at or before `(date_last_modified, id)` has been read and acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    /// `dateLastModified`, epoch ms.
    pub date_last_modified: i64,
    /// Record id within that millisecond.
    pub id: i64,
}

impl Cursor {
    pub fn new(date_last_modified: i64, id: i64) -> Self {
        Self {
            date_last_modified,
            id,
        }
    }

    /// The cursor that covers every record strictly before millisecond `ts`.
    pub fn before(ts: i64) -> Self {
        Self::new(ts - 1, i64::MAX)
    }

    /// This cursor moved back by `ms` (to the start of that millisecond): the start of an overlapping poll.
    pub fn rewind(self, ms: i64) -> Self {
        if ms <= 0 {
            self
        } else {
            Self::new(self.date_last_modified.saturating_sub(ms), i64::MIN)
        }
    }

    /// Whether a record at `(ts, id)` is at or before this cursor (already covered).
    pub fn is_before(self, ts: i64, id: i64) -> bool {
        (ts, id) <= (self.date_last_modified, self.id)
    }
}

/// Lucene query for the records strictly after `after` and strictly before millisecond `until`.
pub fn range_query(after: Option<Cursor>, until: Option<i64>) -> String {
    let hi = until.map_or("*]".to_string(), |u| format!("{u}}}"));
    match after {
        None => format!("dateLastModified:[* TO {hi}"),
        Some(c) if c.id == i64::MAX => {
            format!("dateLastModified:{{{} TO {hi}", c.date_last_modified)
        }
        Some(c) if c.id == i64::MIN => {
            format!("dateLastModified:[{} TO {hi}", c.date_last_modified)
        }
        Some(c) => format!(
            "dateLastModified:[{ts} TO {hi} AND (dateLastModified:{{{ts} TO *] OR id:{{{id} TO *])",
            ts = c.date_last_modified,
            id = c.id
        ),
    }
}

/// One slice of a backlog: the records after `start` and before millisecond `end` (`None`: open-ended,
/// it also takes whatever changes while the poll runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: Option<Cursor>,
    pub end: Option<i64>,
}

/// Splits the records after `start` at the given timestamps (those of the records found at evenly spaced
/// offsets). Split points are whole milliseconds, so a tie never straddles two sub-ranges; duplicates and
/// points not after `start` are dropped.
pub fn plan(start: Option<Cursor>, mut split_at: Vec<i64>) -> Vec<SubRange> {
    split_at.sort_unstable();
    split_at.dedup();
    let floor = start.map(|c| c.date_last_modified);
    split_at.retain(|&ts| floor.is_none_or(|f| ts > f));
    let mut ranges = Vec::with_capacity(split_at.len() + 1);
    let mut from = start;
    for ts in split_at {
        ranges.push(SubRange {
            start: from,
            end: Some(ts),
        });
        from = Some(Cursor::before(ts));
    }
    ranges.push(SubRange {
        start: from,
        end: None,
    });
    ranges
}

#[derive(Debug, Clone)]
struct RangeState {
    range: SubRange,
    acked: Option<Cursor>,
    done: bool,
}

/// Progress of sub-ranges read concurrently; the committed point is the furthest cursor below which every
/// sub-range is complete and acknowledged.
#[derive(Debug, Clone)]
pub struct Progress {
    ranges: Vec<RangeState>,
}

impl Progress {
    pub fn new(ranges: &[SubRange]) -> Self {
        Self {
            ranges: ranges
                .iter()
                .map(|&range| RangeState {
                    range,
                    acked: None,
                    done: false,
                })
                .collect(),
        }
    }

    /// Sub-range `i` has every record up to `cursor` acknowledged.
    pub fn ack(&mut self, i: usize, cursor: Cursor) {
        let r = &mut self.ranges[i];
        r.acked = r.acked.max(Some(cursor));
    }

    /// Sub-range `i` is complete and acknowledged.
    pub fn finish(&mut self, i: usize) {
        self.ranges[i].done = true;
    }

    /// Whether every sub-range is complete.
    pub fn all_done(&self) -> bool {
        self.ranges.iter().all(|r| r.done)
    }

    /// The cursor that may be persisted now (`None`: nothing beyond the start, which was `None`).
    pub fn committed(&self) -> Option<Cursor> {
        let mut point = self.ranges.first().and_then(|r| r.range.start);
        for r in &self.ranges {
            let reached = r.acked.max(r.range.start).max(point);
            if !r.done {
                return reached;
            }
            point = match r.range.end {
                Some(end) => Some(Cursor::before(end)).max(reached),
                None => reached,
            };
        }
        point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_read_strictly_after_the_cursor_through_ties() {
        let cases = [
            (None, None, "dateLastModified:[* TO *]"),
            (None, Some(50), "dateLastModified:[* TO 50}"),
            (
                Some(Cursor::new(10, 7)),
                None,
                "dateLastModified:[10 TO *] AND (dateLastModified:{10 TO *] OR id:{7 TO *])",
            ),
            (
                Some(Cursor::new(10, 7)),
                Some(20),
                "dateLastModified:[10 TO 20} AND (dateLastModified:{10 TO *] OR id:{7 TO *])",
            ),
            (
                Some(Cursor::before(20)),
                Some(30),
                "dateLastModified:{19 TO 30}",
            ),
            (
                Some(Cursor::new(10, 7).rewind(5)),
                None,
                "dateLastModified:[5 TO *]",
            ),
        ];
        for (after, until, want) in cases {
            assert_eq!(range_query(after, until), want);
        }
    }

    #[test]
    fn records_at_or_before_the_cursor_are_covered() {
        let c = Cursor::new(10, 7);
        for (ts, id, covered) in [
            (9, 100, true),
            (10, 6, true),
            (10, 7, true),
            (10, 8, false),
            (11, 1, false),
        ] {
            assert_eq!(c.is_before(ts, id), covered, "({ts},{id})");
        }
    }

    #[test]
    fn plans_split_on_whole_milliseconds() {
        let start = Some(Cursor::new(10, 3));
        let r = plan(start, vec![30, 20, 20, 5, 10]);
        assert_eq!(
            r,
            vec![
                SubRange {
                    start,
                    end: Some(20)
                },
                SubRange {
                    start: Some(Cursor::before(20)),
                    end: Some(30)
                },
                SubRange {
                    start: Some(Cursor::before(30)),
                    end: None
                },
            ]
        );
        assert_eq!(
            plan(None, vec![]),
            vec![SubRange {
                start: None,
                end: None
            }]
        );
    }

    #[test]
    fn committed_point_waits_for_every_earlier_range() {
        let start = Some(Cursor::new(10, 3));
        let ranges = plan(start, vec![20, 30]);
        let mut p = Progress::new(&ranges);
        assert_eq!(p.committed(), start);
        // A later range racing ahead does not move the committed point.
        p.ack(2, Cursor::new(35, 1));
        p.ack(1, Cursor::new(25, 9));
        assert_eq!(p.committed(), start);
        p.ack(0, Cursor::new(15, 2));
        assert_eq!(p.committed(), Some(Cursor::new(15, 2)));
        p.finish(0);
        assert_eq!(p.committed(), Some(Cursor::new(25, 9)));
        p.finish(1);
        assert_eq!(p.committed(), Some(Cursor::new(35, 1)));
        assert!(!p.all_done());
        p.ack(2, Cursor::new(40, 4));
        p.finish(2);
        assert!(p.all_done());
        assert_eq!(p.committed(), Some(Cursor::new(40, 4)));
    }

    #[test]
    fn empty_finished_ranges_commit_their_end() {
        let ranges = plan(None, vec![20]);
        let mut p = Progress::new(&ranges);
        p.finish(0);
        assert_eq!(p.committed(), Some(Cursor::before(20)));
        p.finish(1);
        assert_eq!(p.committed(), Some(Cursor::before(20)));
    }
}
