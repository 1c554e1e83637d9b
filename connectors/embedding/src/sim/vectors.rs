//! The simulator's "model": a signed, hashed bag of features, L2-normalised.
//!
//! Text is lower-cased and cut into word tokens (runs of alphanumeric characters); common English function
//! words are dropped so that two unrelated texts do not look alike merely because both use "the" and "and".
//! Each remaining word contributes three kinds of features: the word itself, the pair it forms with the previous
//! word (some sensitivity to order), and its character trigrams with word boundaries (so "engineer" and
//! "engineering" still overlap). Each feature is hashed to a bucket in `0..dim` and added with a hashed sign;
//! the signs make unrelated features cancel on average, so unrelated texts land near cosine 0, while texts
//! sharing most features land near 1. Identical text gives an identical vector on every platform.
//!
//! The hot loop hashes characters as it walks the text and never allocates per token, which keeps a batch of
//! 500 one-kilobyte texts within a few milliseconds.

use std::sync::OnceLock;

/// Weight of a whole word.
const WORD_WEIGHT: f32 = 1.0;
/// Weight of a pair of consecutive (non-stop) words.
const BIGRAM_WEIGHT: f32 = 0.5;
/// Weight of one character trigram; words have many, so each counts little.
const TRIGRAM_WEIGHT: f32 = 0.2;

/// Salts keep the three feature kinds in separate hash spaces.
const WORD_SALT: u64 = 0x9e37_79b9_7f4a_7c15;
const BIGRAM_SALT: u64 = 0xc2b2_ae3d_27d4_eb4f;
const TRIGRAM_SALT: u64 = 0x1656_67b1_9e37_79f9;
/// Stands for "no features at all" (empty or punctuation-only text), so such text still gets a unit vector.
const EMPTY_FEATURE: u64 = 0x27d4_eb2f_1656_67c5;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Word-boundary marker inside trigrams; not alphanumeric, so it never occurs inside a word.
const BOUNDARY: u32 = 0x02;
/// "No character yet": trigrams are emitted only once two real positions precede.
const NONE: u32 = u32::MAX;
/// Longest stop word, so longer words skip the lookup.
const STOP_WORD_MAX_CHARS: usize = 5;

/// Function words that carry no topic. Short on purpose: the goal is that unrelated texts score low, not
/// linguistic completeness.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "he",
    "her", "his", "i", "in", "is", "it", "its", "of", "on", "or", "our", "she", "that", "the",
    "their", "this", "to", "was", "we", "were", "will", "with", "you", "your",
];

/// Embeds one text into a fresh unit vector of `dim` components.
pub fn embed_text(text: &str, dim: usize) -> Vec<f32> {
    let mut out = vec![0.0; dim];
    embed_into(text, &mut out);
    out
}

/// Embeds one text into `out` (overwritten), whose length is the dimension. Does nothing for an empty `out`.
pub fn embed_into(text: &str, out: &mut [f32]) {
    if out.is_empty() {
        return;
    }
    out.fill(0.0);
    let mut acc = Accumulator { out, features: 0 };
    let mut word = WordState::new();
    let mut previous_word: Option<u64> = None;
    for c in text.chars() {
        if c.is_alphanumeric() {
            let lower = if c.is_ascii() {
                c.to_ascii_lowercase()
            } else {
                c.to_lowercase().next().unwrap_or(c)
            };
            word.push(lower as u32, &mut acc);
        } else if word.len > 0 {
            word.finish(&mut previous_word, &mut acc);
        }
    }
    if word.len > 0 {
        word.finish(&mut previous_word, &mut acc);
    }
    if acc.features == 0 {
        acc.add(EMPTY_FEATURE, 1.0);
    }
    normalize(acc.out);
}

/// Cosine similarity of two vectors of equal length (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na.sqrt() * nb.sqrt())
    }
}

/// Adds hashed features into the output buckets.
struct Accumulator<'a> {
    out: &'a mut [f32],
    features: usize,
}

impl Accumulator<'_> {
    #[inline]
    fn add(&mut self, key: u64, weight: f32) {
        let h = mix(key);
        // High bits pick the bucket (multiply-shift avoids a division), the lowest bit picks the sign.
        let bucket = ((u128::from(h) * self.out.len() as u128) >> 64) as usize;
        let sign = if h & 1 == 0 { weight } else { -weight };
        self.out[bucket] += sign;
        self.features += 1;
    }
}

/// The word being read: its running hash and its trigrams, held back until we know it is not a stop word.
struct WordState {
    hash: u64,
    len: usize,
    prev2: u32,
    prev1: u32,
    /// Trigram keys not yet added; stop words are at most 5 characters, so 8 slots always suffice to hold
    /// back a stop word's trigrams, and longer words flush early.
    held: [u64; 8],
    held_len: usize,
}

impl WordState {
    fn new() -> Self {
        Self {
            hash: FNV_OFFSET,
            len: 0,
            prev2: NONE,
            prev1: BOUNDARY,
            held: [0; 8],
            held_len: 0,
        }
    }

    #[inline]
    fn push(&mut self, c: u32, acc: &mut Accumulator<'_>) {
        self.hash = (self.hash ^ u64::from(c)).wrapping_mul(FNV_PRIME);
        self.len += 1;
        if self.prev2 != NONE {
            self.hold(trigram(self.prev2, self.prev1, c), acc);
        }
        self.prev2 = self.prev1;
        self.prev1 = c;
    }

    #[inline]
    fn hold(&mut self, key: u64, acc: &mut Accumulator<'_>) {
        if self.held_len == self.held.len() {
            // Too long to be a stop word: release what we held and keep releasing.
            for &held in &self.held {
                acc.add(held, TRIGRAM_WEIGHT);
            }
            self.held_len = 0;
        }
        self.held[self.held_len] = key;
        self.held_len += 1;
    }

    fn finish(&mut self, previous_word: &mut Option<u64>, acc: &mut Accumulator<'_>) {
        if self.len <= STOP_WORD_MAX_CHARS && stop_word_hashes().contains(&self.hash) {
            *self = Self::new();
            return;
        }
        let closing = trigram(self.prev2, self.prev1, BOUNDARY);
        self.hold(closing, acc);
        for &held in &self.held[..self.held_len] {
            acc.add(held, TRIGRAM_WEIGHT);
        }
        acc.add(self.hash ^ WORD_SALT, WORD_WEIGHT);
        if let Some(previous) = *previous_word {
            acc.add(
                previous.rotate_left(29) ^ self.hash ^ BIGRAM_SALT,
                BIGRAM_WEIGHT,
            );
        }
        *previous_word = Some(self.hash);
        *self = Self::new();
    }
}

/// Packs three characters (21 bits each) into one key.
#[inline]
fn trigram(a: u32, b: u32, c: u32) -> u64 {
    ((u64::from(a) & 0x1f_ffff) << 42
        | (u64::from(b) & 0x1f_ffff) << 21
        | (u64::from(c) & 0x1f_ffff))
        ^ TRIGRAM_SALT
}

/// splitmix64's finaliser: spreads every input bit over the output, which FNV alone does poorly in high bits.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Word hashes of [`STOP_WORDS`], computed with the tokenizer's own hash so lookups compare numbers.
fn stop_word_hashes() -> &'static [u64] {
    static HASHES: OnceLock<Vec<u64>> = OnceLock::new();
    HASHES.get_or_init(|| {
        STOP_WORDS
            .iter()
            .map(|word| {
                word.chars().fold(FNV_OFFSET, |h, c| {
                    (h ^ u64::from(c as u32)).wrapping_mul(FNV_PRIME)
                })
            })
            .collect()
    })
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        // Every feature cancelled out in its bucket (astronomically rare): still return a unit vector.
        v[0] = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIM: usize = 384;

    const ENGINEER: &str = "Senior Rust engineer with ten years of experience building distributed streaming \
        systems, Kafka pipelines and PostgreSQL databases. Led a team of five backend developers in London.";
    const NURSE: &str =
        "Registered pediatric nurse caring for children in a busy hospital ward; administers \
        medication, supports families and keeps detailed patient charts during night shifts.";

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn deterministic_and_unit_length() {
        for text in [
            ENGINEER,
            NURSE,
            "",
            "   ...  ",
            "Ünïcödé ÉCOLE straße",
            "a the and",
        ] {
            let a = embed_text(text, DIM);
            assert_eq!(a, embed_text(text, DIM), "{text:?}");
            assert!((norm(&a) - 1.0).abs() < 1e-4, "{text:?}: norm {}", norm(&a));
        }
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        let a = embed_text("Rust Engineer, Kafka; PostgreSQL!", DIM);
        let b = embed_text("rust engineer kafka postgresql", DIM);
        assert!(cosine(&a, &b) > 0.999, "{}", cosine(&a, &b));
    }

    #[test]
    fn similar_texts_are_close_and_unrelated_far() {
        let base = embed_text(ENGINEER, DIM);
        let edited = embed_text(&ENGINEER.replace("five", "six"), DIM);
        let unrelated = embed_text(NURSE, DIM);
        assert!(
            cosine(&base, &edited) > 0.9,
            "near-identical: {}",
            cosine(&base, &edited)
        );
        assert!(
            cosine(&base, &unrelated).abs() < 0.3,
            "unrelated: {}",
            cosine(&base, &unrelated)
        );
        // Partial overlap sits in between: the ordering is what a matcher relies on.
        let related = embed_text("Rust engineer for Kafka streaming pipelines", DIM);
        let c = cosine(&base, &related);
        assert!(
            c > cosine(&base, &unrelated) && c < cosine(&base, &edited),
            "related: {c}"
        );
    }

    #[test]
    fn stop_words_alone_do_not_make_texts_similar() {
        let a = embed_text("the cat and the hat of the town", DIM);
        let b = embed_text("the stock and the bond of the market", DIM);
        assert!(cosine(&a, &b).abs() < 0.3, "{}", cosine(&a, &b));
    }

    #[test]
    fn inflections_overlap_through_trigrams() {
        let a = embed_text("engineering", DIM);
        let b = embed_text("engineer", DIM);
        let c = embed_text("hospital", DIM);
        assert!(
            cosine(&a, &b) > cosine(&a, &c) + 0.1,
            "{} vs {}",
            cosine(&a, &b),
            cosine(&a, &c)
        );
    }

    #[test]
    fn dimension_is_respected() {
        assert_eq!(embed_text(ENGINEER, 8).len(), 8);
        assert!((embed_text(ENGINEER, 1)[0].abs() - 1.0).abs() < 1e-6);
        assert!(embed_text("x", 0).is_empty());
    }
}
