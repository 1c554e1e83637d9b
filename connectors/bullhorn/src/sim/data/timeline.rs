//! Record timestamps: `(dateAdded, dateLastModified)` pairs spread over 2023-2025 in id order,
//! with a `tie_share` of records in bulk imports that share one `dateLastModified` millisecond.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{EPOCH_END, EPOCH_START, YEAR_MS};

/// Timestamps `(dateAdded, dateLastModified)` for `n` records in id order, with bulk-import ties.
pub(super) fn timeline(rng: &mut ChaCha8Rng, n: usize, tie_share: f64) -> Vec<(i64, i64)> {
    let tied = ((n as f64) * tie_share).round() as usize;
    // One big import (half of the tied records, so it spans several 500-record pages at scale) plus
    // smaller ones of 20-300 records.
    let mut groups = Vec::new();
    let mut left = tied;
    if left > 0 {
        let big = (tied / 2).max(1);
        groups.push(big);
        left -= big;
    }
    while left > 0 {
        let g = rng.random_range(20..=300).min(left);
        groups.push(g);
        left -= g;
    }
    let singles = n - tied;
    let span = (EPOCH_END - EPOCH_START) as f64;
    let step = span / (n.max(1) as f64);
    let mut t = EPOCH_START as f64;
    let mut out = Vec::with_capacity(n);
    let mut gi = 0;
    let mut singles_left = singles;
    while out.len() < n {
        let groups_left = groups.len() - gi;
        let start_group = groups_left > 0
            && (singles_left == 0
                || rng.random_range(0..(singles_left + groups_left)) < groups_left);
        let ms = t as i64;
        if start_group {
            let g = groups[gi];
            gi += 1;
            for _ in 0..g {
                // A few imported records were touched again later; most keep the import's millisecond.
                let modified = if rng.random_bool(0.05) {
                    ms + rng.random_range(1..YEAR_MS).min(EPOCH_END - ms).max(1)
                } else {
                    ms
                };
                out.push((ms, modified));
            }
            t += step * (g as f64).sqrt();
        } else {
            singles_left -= 1;
            let modified = if rng.random_bool(0.6) {
                ms + rng.random_range(1..=(EPOCH_END - ms).max(2))
            } else {
                ms
            };
            out.push((ms, modified));
            t += step * rng.random_range(0.2..1.8);
        }
        if t > EPOCH_END as f64 - 1.0 {
            t = EPOCH_END as f64 - 1.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn timeline_has_ties_and_covers_every_record() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let t = timeline(&mut rng, 2000, 0.3);
        assert_eq!(t.len(), 2000);
        let mut counts = std::collections::HashMap::new();
        for (_, m) in &t {
            *counts.entry(*m).or_insert(0usize) += 1;
        }
        let biggest = counts.values().copied().max().unwrap_or(0);
        assert!(biggest >= 250, "largest tie group {biggest}");
        assert!(t
            .iter()
            .all(|(a, m)| m >= a && *a >= EPOCH_START && *m <= EPOCH_END + YEAR_MS));
    }
}
