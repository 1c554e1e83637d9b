//! Text cleanup shared by every field the normalize stage copies from a CRM: one-line values (names,
//! titles, cities, statuses) go through [`clean_text`], long values (job descriptions, resumes) through
//! [`html_to_text`].
//!
//! Both remove what a person cannot see but a database, a search index or an embedding model can:
//! zero-width characters (U+200B..U+200D, U+2060, the U+FEFF byte-order mark), bidirectional controls
//! (U+200E/U+200F, U+202A..U+202E, U+2066..U+2069) and other control characters (a NUL would even make
//! Postgres refuse the row). Then whitespace runs collapse to one space and the result is put in Unicode
//! NFC, so "José" typed with a combining accent and "José" pasted precomposed compare equal downstream.
//! ASCII text, by far the common case, skips the NFC pass, which keeps this cheap on the hot path.

use std::cell::RefCell;

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// Characters removed from every text: invisible formatting and bidirectional controls.
///
/// Removing U+200D (zero-width joiner) also splits emoji sequences and changes the shaping of some
/// Indic scripts; we accept that because CRM data entry adds these characters by accident far more
/// often than it needs them, and a name must compare equal to its visible spelling.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Dropped silently: invisible characters and controls that are not whitespace.
fn is_dropped(c: char) -> bool {
    is_invisible(c) || (c.is_control() && !c.is_whitespace())
}

/// One-line cleanup: invisible and control characters removed, whitespace runs (including line
/// breaks and no-break spaces) collapsed to one space, trimmed, NFC.
pub fn clean_text(s: &str) -> String {
    collapse(s, Mode::OneLine)
}

/// [`clean_text`], with an empty result as `None`: a name of only spaces is no name.
pub fn clean_opt(s: Option<&str>) -> Option<String> {
    let t = clean_text(s?);
    (!t.is_empty()).then_some(t)
}

/// Markers the HTML pass leaves for the whitespace pass: U+2028 LINE SEPARATOR for a line break,
/// U+2029 PARAGRAPH SEPARATOR for a paragraph break. In HTML mode source newlines are only spaces, so
/// only these decide where lines end.
const LINE: char = '\u{2028}';
const PARA: char = '\u{2029}';

/// HTML or plain text → cleaned text; empty → `None` (long CRM text: summaries, descriptions).
pub fn long_text(s: Option<&str>) -> Option<String> {
    let t = html_to_text(s?);
    (!t.is_empty()).then_some(t)
}

/// A multi-select picklist (`a;b;c`) or free-text (`a, b`) list, each item cleaned, empty items
/// dropped, the first spelling of a case-insensitive duplicate kept.
pub fn skill_list(list: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in list.unwrap_or_default().split([';', ',', '\n']) {
        let s = clean_text(part);
        if s.is_empty() || out.iter().any(|o| o.to_lowercase() == s.to_lowercase()) {
            continue;
        }
        out.push(s);
    }
    out
}

/// Multi-line cleanup for descriptions and resumes, HTML or plain text.
///
/// HTML (detected by the presence of at least one tag) is reduced to text: tags are removed, entities
/// decoded (`&amp;`, `&ndash;`, `&#8217;`, ...), `<script>`/`<style>` contents and comments dropped,
/// `<br>`, `<li>`, `<div>`, `<tr>` end a line and `<p>`, headings, lists and tables end a paragraph.
/// Plain text keeps its own line structure; `&` in it is left alone ("R&D", "AT&T").
///
/// Then each line is cleaned like [`clean_text`], empty lines collapse to one blank line between
/// paragraphs, and the text is trimmed.
pub fn html_to_text(s: &str) -> String {
    if looks_like_html(s) {
        // The tag-free intermediate lives only until `collapse` has read it: reuse one buffer per
        // thread instead of allocating and freeing kilobytes per record.
        thread_local!(static STRIPPED: RefCell<String> = const { RefCell::new(String::new()) });
        STRIPPED.with_borrow_mut(|buf| {
            buf.clear();
            strip_tags(s, buf);
            let out = collapse(buf, Mode::Html);
            // A 100 KB outlier must not pin 100 KB per thread forever.
            if buf.capacity() > 64 * 1024 {
                *buf = String::new();
            }
            out
        })
    } else {
        collapse(s, Mode::Plain)
    }
}

/// Whether `s` holds at least one thing shaped like a tag: `<` then a letter, `/` or `!`, and a
/// later `>`. "a < b" or "<3" stay plain text.
fn looks_like_html(s: &str) -> bool {
    let b = s.as_bytes();
    let mut from = 0;
    while let Some(i) = s[from..].find('<').map(|i| i + from) {
        if matches!(b.get(i + 1), Some(c) if c.is_ascii_alphabetic() || *c == b'/' || *c == b'!')
            && s[i..].contains('>')
        {
            return true;
        }
        from = i + 1;
    }
    false
}

/// How a tag affects the text around it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    None,
    Space,
    Line,
    Para,
}

fn tag_break(name: &str) -> Break {
    // Every tag of a description passes here: lower-case into a stack buffer and let the compiler
    // build the comparison tree, instead of scanning a list of names case-insensitively.
    let mut buf = [0u8; 10];
    let Some(dst) = buf.get_mut(..name.len()) else {
        return Break::None; // longer than any name below
    };
    dst.copy_from_slice(name.as_bytes());
    dst.make_ascii_lowercase();
    match &*dst {
        b"br" | b"li" | b"div" | b"tr" | b"dt" | b"dd" | b"hr" => Break::Line,
        b"p" | b"h1" | b"h2" | b"h3" | b"h4" | b"h5" | b"h6" | b"ul" | b"ol" | b"dl" | b"table"
        | b"blockquote" | b"pre" | b"section" | b"article" | b"header" | b"footer" | b"body"
        | b"html" => Break::Para,
        b"td" | b"th" => Break::Space,
        _ => Break::None,
    }
}

/// Removes tags and decodes entities, leaving [`LINE`]/[`PARA`] markers where tags break lines.
fn strip_tags(s: &str, out: &mut String) {
    let b = s.as_bytes();
    out.reserve(s.len());
    let mut text_start = 0;
    let mut i = 0;
    while let Some(lt) = s[i..].find('<').map(|k| k + i) {
        let Some((end, tag)) = parse_tag(s, lt) else {
            i = lt + 1;
            continue;
        };
        push_decoded(&s[text_start..lt], out);
        let mut next = end;
        match tag {
            Tag::Comment => {}
            Tag::Element { name, closing } => {
                let skip_body = !closing
                    && (name.eq_ignore_ascii_case("script") || name.eq_ignore_ascii_case("style"));
                if skip_body {
                    next = find_closing(s, end, name).unwrap_or(b.len());
                }
                match tag_break(name) {
                    Break::None => {}
                    Break::Space => out.push(' '),
                    Break::Line => out.push(LINE),
                    Break::Para => out.push(PARA),
                }
            }
        }
        i = next;
        text_start = next;
    }
    push_decoded(&s[text_start..], out);
}

fn push_decoded(text: &str, out: &mut String) {
    if text.contains('&') {
        html_escape::decode_html_entities_to_string(text, out);
    } else {
        out.push_str(text);
    }
}

enum Tag<'a> {
    Comment,
    Element { name: &'a str, closing: bool },
}

/// Parses the tag starting at `s[lt] == '<'`; returns the index after its `>` and what it was, or
/// `None` when this `<` does not open a tag (then it is text).
fn parse_tag(s: &str, lt: usize) -> Option<(usize, Tag<'_>)> {
    let b = s.as_bytes();
    let rest = &s[lt..];
    if let Some(body) = rest.strip_prefix("<!--") {
        let end = body.find("-->").map_or(s.len(), |k| lt + 4 + k + 3);
        return Some((end, Tag::Comment));
    }
    let mut j = lt + 1;
    let closing = b.get(j) == Some(&b'/');
    if closing {
        j += 1;
    }
    match b.get(j) {
        Some(c) if c.is_ascii_alphabetic() => {}
        // <!DOCTYPE ...>, <?xml ...?>: declarations, dropped like comments.
        Some(b'!' | b'?') if !closing => {
            return s[j..].find('>').map(|k| (j + k + 1, Tag::Comment));
        }
        _ => return None,
    }
    let name_start = j;
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b':' || b[j] == b'-') {
        j += 1;
    }
    let name = &s[name_start..j];
    // Find the closing '>' outside quoted attribute values (style="a>b" is legal).
    let mut quote = None;
    while j < b.len() {
        match (quote, b[j]) {
            (None, b'>') => return Some((j + 1, Tag::Element { name, closing })),
            (None, q @ (b'"' | b'\'')) => quote = Some(q),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        j += 1;
    }
    None
}

/// Index just after `</name ...>` at or after `from`, ASCII case-insensitive.
fn find_closing(s: &str, from: usize, name: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = from;
    while let Some(k) = s[i..].find("</").map(|k| k + i) {
        let after = k + 2;
        if b.len() >= after + name.len()
            && b[after..after + name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            return Some(s[after..].find('>').map_or(b.len(), |g| after + g + 1));
        }
        i = after;
    }
    None
}

/// How [`collapse`] treats line structure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every line break is a space.
    OneLine,
    /// Text after [`strip_tags`]: source newlines are spaces, only the [`LINE`]/[`PARA`] markers break.
    Html,
    /// Plain text: `\n` breaks a line, two or more make a paragraph.
    Plain,
}

/// The whitespace pass shared by [`clean_text`] and [`html_to_text`]: drops invisible and control
/// characters, collapses whitespace, writes at most one blank line between paragraphs, trims, NFC.
///
/// It works on bytes and copies runs of visible ASCII in one go, because this loop is where the
/// normalize stage spends most of its time (descriptions and resumes are kilobytes, mostly ASCII).
fn collapse(s: &str, mode: Mode) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    // Strongest break since the last visible character: 0 none, 1 line, 2 paragraph.
    let mut brk = 0u8;
    let mut newlines = 0u8;
    // Set when a character could make the output non-NFC; below U+0300 none can.
    let mut maybe_denormal = false;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_graphic() {
            // A run of printable ASCII (words and the spaces between them): whole lines of ordinary
            // prose are copied with one call; only a run with a double space is copied word by word.
            let start = i;
            i += printable_ascii_prefix(&b[i..]);
            let run = s[start..i].trim_end_matches(' ');
            separate(&mut out, &mut space, &mut brk, &mut newlines);
            if run.contains("  ") {
                for (k, word) in run.split(' ').filter(|w| !w.is_empty()).enumerate() {
                    if k > 0 {
                        out.push(' ');
                    }
                    out.push_str(word);
                }
            } else {
                out.push_str(run);
            }
            space = run.len() < i - start;
            continue;
        }
        let c = if b[i] < 0x80 {
            b[i] as char
        } else {
            s[i..].chars().next().unwrap_or_default()
        };
        i += c.len_utf8();
        match c {
            LINE if mode != Mode::OneLine => brk = brk.max(1),
            PARA if mode != Mode::OneLine => brk = 2,
            '\n' if mode == Mode::Plain => {
                newlines = newlines.saturating_add(1);
                brk = brk.max(newlines.min(2));
            }
            // \r\n and lone \r: the \n (if any) counts, the \r is only whitespace.
            c if c.is_whitespace() => space = true,
            c if is_dropped(c) => {}
            c => {
                separate(&mut out, &mut space, &mut brk, &mut newlines);
                // Only a combining mark or a character that NFC may recompose can make the text
                // non-NFC; checking per character spares a second pass over every accented text.
                maybe_denormal |= c >= '\u{300}'
                    && (canonical_combining_class(c) != 0
                        || is_nfc_quick(std::iter::once(c)) != IsNormalized::Yes);
                out.push(c);
            }
        }
    }
    if maybe_denormal && is_nfc_quick(out.chars()) != IsNormalized::Yes {
        out.nfc().collect()
    } else {
        out
    }
}

/// Length of the leading run of printable ASCII (0x20..=0x7E) in `b`, eight bytes per step: this
/// scan is the inner loop of the whole normalize stage.
fn printable_ascii_prefix(b: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        // Classic SWAR tests: a byte below 0x20 ("has less"), or above 0x7E or non-ASCII ("has
        // more", the `| w` catches bytes with the high bit already set). Both are exact about
        // whether such a byte exists, which is all we need before the byte loop finds it.
        let below = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let above = (w.wrapping_add(ONES) | w) & HIGH;
        if below | above != 0 {
            break;
        }
        i += 8;
    }
    i + b[i..]
        .iter()
        .position(|c| !matches!(c, 0x20..=0x7E))
        .unwrap_or(b.len() - i)
}

/// Writes the pending separator before a visible character; nothing at the start (that trims).
fn separate(out: &mut String, space: &mut bool, brk: &mut u8, newlines: &mut u8) {
    if !out.is_empty() {
        match *brk {
            0 if *space => out.push(' '),
            0 => {}
            1 => out.push('\n'),
            _ => out.push_str("\n\n"),
        }
    }
    *space = false;
    *brk = 0;
    *newlines = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_text_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("trim", "  Ada  ", "Ada"),
            ("collapse", "Ada \t\n  Lovelace", "Ada Lovelace"),
            (
                "nbsp is whitespace",
                "Ada\u{00A0}\u{00A0}Lovelace",
                "Ada Lovelace",
            ),
            ("zero-width space", "A\u{200B}da", "Ada"),
            ("zwj and zwnj", "A\u{200C}d\u{200D}a", "Ada"),
            ("bom", "\u{FEFF}Engineer\t", "Engineer"),
            ("word joiner", "Ada\u{2060}", "Ada"),
            ("rtl marks", "\u{200F}Smith\u{202E}", "Smith"),
            ("ltr mark", "\u{200E}Smith", "Smith"),
            ("isolates", "\u{2066}Smith\u{2069}", "Smith"),
            ("embedding", "\u{202A}Smith\u{202C}", "Smith"),
            ("nul and controls", "Ad\u{0}a\u{7}", "Ada"),
            ("nfc composes", "Jose\u{0301}", "Jos\u{00E9}"),
            ("precomposed kept", "Jos\u{00E9}", "Jos\u{00E9}"),
            ("removal then nfc", "e\u{200B}\u{0301}", "\u{00E9}"),
            ("cjk untouched", " 山田 太郎 ", "山田 太郎"),
            ("emoji kept", "Ada 🌸", "Ada 🌸"),
            ("only invisible", "\u{200B}\u{FEFF} ", ""),
            ("empty", "", ""),
        ];
        for (name, input, want) in cases {
            assert_eq!(clean_text(input), *want, "case {name}");
        }
    }

    #[test]
    fn printable_prefix_matches_the_byte_loop() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        for stop in bytes {
            for at in 0..20 {
                let mut v = vec![b'a'; 20];
                v[at] = stop;
                let want = v
                    .iter()
                    .position(|c| !matches!(c, 0x20..=0x7E))
                    .unwrap_or(20);
                assert_eq!(printable_ascii_prefix(&v), want, "byte {stop:#x} at {at}");
            }
        }
    }

    #[test]
    fn clean_opt_maps_empty_to_none() {
        assert_eq!(clean_opt(None), None);
        assert_eq!(clean_opt(Some(" \u{200B} ")), None);
        assert_eq!(clean_opt(Some(" Ada ")).as_deref(), Some("Ada"));
    }

    #[test]
    fn html_to_text_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain unchanged", "Hello world", "Hello world"),
            (
                "plain keeps lines",
                "Line one\n  Line two  \n\n\n\nPara",
                "Line one\nLine two\n\nPara",
            ),
            ("plain crlf", "a\r\nb\r\n\r\nc", "a\nb\n\nc"),
            (
                "plain ampersand kept",
                "R&D at AT&T; a < b",
                "R&D at AT&T; a < b",
            ),
            ("br", "a<br>b<BR/>c", "a\nb\nc"),
            ("paragraphs", "<p>One</p>\n<p>Two</p>", "One\n\nTwo"),
            (
                "list items are lines",
                "<ul>\n  <li>a</li>\n  <li>b</li>\n</ul>",
                "a\nb",
            ),
            (
                "heading then list",
                "<h3>Req</h3>\n<ul><li>Rust</li></ul><br>\n<h3>Nice</h3>",
                "Req\n\nRust\n\nNice",
            ),
            (
                "entities",
                "<p>Tom &amp; Jerry &ndash; &lt;b&gt; &#8217;s &#x41;</p>",
                "Tom & Jerry \u{2013} <b> \u{2019}s A",
            ),
            (
                "nbsp entity collapses",
                "<p>Apply&nbsp;today!</p>",
                "Apply today!",
            ),
            ("unknown entity kept", "<b>x</b> &bogus; y", "x &bogus; y"),
            (
                "inline tags join",
                "<p><strong>Senior</strong> Engineer</p>",
                "Senior Engineer",
            ),
            ("attributes with >", "<p style=\"a>b\">x</p>", "x"),
            (
                "script and style dropped",
                "<style>p{}</style><p>x</p><script>alert(1)</script>y",
                "x\n\ny",
            ),
            ("comments dropped", "a<!-- hidden -->b<!DOCTYPE html>", "ab"),
            (
                "table cells spaced",
                "<table><tr><td>a</td><td>b</td></tr></table>",
                "a b",
            ),
            ("invisible in html", "<p>A\u{200B}da</p>", "Ada"),
            ("source newline is a space", "<p>one\ntwo</p>", "one two"),
            ("unclosed lt is text", "<p>3 <4</p>", "3 <4"),
        ];
        for (name, input, want) in cases {
            assert_eq!(html_to_text(input), *want, "case {name}");
        }
    }
}
