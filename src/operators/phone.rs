//! Phone numbers to E.164 (`+<country code><national number>`, digits only) where we can tell the
//! country, else the digits as given.
//!
//! A number written internationally (`+44 20 ...`, `0044 20 ...`, or `011 44 ...` from a North
//! American record) carries its country. A national number (`(617) 555-0100`, `020 7946 0958`) takes
//! the record's country (address `countryCode`, else Bullhorn `countryID`), else the configured default.
//! We know the dialling plans of the countries our customers recruit in most (US/CA, GB, DE, FR, IN,
//! AU, JP): country code, trunk prefix and national number length. Other countries' international
//! numbers pass with the generic E.164 length check (8 to 15 digits).
//!
//! Anything that does not fit is kept as its digits: a phone number is contact data a recruiter can
//! still read and fix, so an odd one is never a reason to reject the record. Text without any digit
//! ("call me", "n/a") gives `None`.
//!
//! We wrote this instead of using the `phonenumber` crate (libphonenumber's metadata, maintained):
//! that crate validates against every region's full numbering plan with regular expressions, which
//! costs more per number than the whole normalize budget allows per record (two numbers per candidate),
//! and we need normalization, not carrier-grade validation.

use std::ops::RangeInclusive;

/// One country's dialling plan, as much of it as normalization needs.
struct Plan {
    /// ISO 3166-1 alpha-2.
    iso: &'static str,
    /// Country calling code.
    cc: &'static str,
    /// Digits of the national significant number (without trunk prefix).
    nsn_len: RangeInclusive<usize>,
    /// The national trunk prefix dialled before the national number at home ("0" in most of Europe).
    trunk: &'static str,
}

const PLANS: &[Plan] = &[
    Plan {
        iso: "US",
        cc: "1",
        nsn_len: 10..=10,
        trunk: "1",
    },
    Plan {
        iso: "CA",
        cc: "1",
        nsn_len: 10..=10,
        trunk: "1",
    },
    Plan {
        iso: "GB",
        cc: "44",
        nsn_len: 9..=10,
        trunk: "0",
    },
    Plan {
        iso: "DE",
        cc: "49",
        nsn_len: 6..=13,
        trunk: "0",
    },
    Plan {
        iso: "FR",
        cc: "33",
        nsn_len: 9..=9,
        trunk: "0",
    },
    Plan {
        iso: "IN",
        cc: "91",
        nsn_len: 10..=10,
        trunk: "0",
    },
    Plan {
        iso: "AU",
        cc: "61",
        nsn_len: 9..=9,
        trunk: "0",
    },
    Plan {
        iso: "JP",
        cc: "81",
        nsn_len: 9..=10,
        trunk: "0",
    },
];

fn plan_for_country(iso: &str) -> Option<&'static Plan> {
    PLANS.iter().find(|p| p.iso.eq_ignore_ascii_case(iso))
}

/// Whether the national number is plausible for the plan. North American numbers also need an area
/// code that does not start with 0 or 1 (so `0000000000` stays digits); we do not check the exchange,
/// which would refuse the 555-01xx numbers used in examples and tests.
fn fits(plan: &Plan, nsn: &str) -> bool {
    plan.nsn_len.contains(&nsn.len()) && (plan.cc != "1" || nsn.as_bytes()[0] >= b'2')
}

/// `raw` in E.164 where possible (see the module doc); `country` is the record's ISO country code
/// (or the configured default). `None` when `raw` holds no digit.
pub fn normalize_phone(raw: &str, country: &str) -> Option<String> {
    // Digits up to an extension marker ("x", "ext.", "#"): letters before the first digit are a
    // label ("Tel: ...") and are skipped.
    let mut digits = String::with_capacity(20);
    let mut plus = false;
    for c in raw.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if c == '+' && digits.is_empty() {
            plus = true;
        } else if !digits.is_empty() && (c.is_alphabetic() || c == '#') {
            break;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let home = plan_for_country(country);
    let international = if plus {
        Some(&digits[..])
    } else if let Some(rest) = digits.strip_prefix("00") {
        Some(rest)
    } else if home.is_some_and(|p| p.cc == "1") {
        digits.strip_prefix("011")
    } else {
        None
    };
    let e164 = match international {
        Some(intl) => from_international(intl),
        None => home.and_then(|p| from_national(p, &digits)),
    };
    Some(e164.unwrap_or(digits))
}

fn from_international(intl: &str) -> Option<String> {
    // Country codes are prefix-free, so the first plan whose code starts the number is the one.
    match PLANS.iter().find(|p| intl.starts_with(p.cc)) {
        Some(plan) => {
            let nsn = &intl[plan.cc.len()..];
            // "+44 (0)20 ...": writers often keep the trunk prefix after the country code. In the
            // trunk-0 plans we know, a national number never starts with 0, so it is always the trunk.
            let nsn = strip_trunk_zero(plan, nsn);
            fits(plan, nsn).then(|| format!("+{}{nsn}", plan.cc))
        }
        // No country code starts with 0 ("00 000..." is not a number).
        None => {
            ((8..=15).contains(&intl.len()) && !intl.starts_with('0')).then(|| format!("+{intl}"))
        }
    }
}

fn strip_trunk_zero<'a>(plan: &Plan, nsn: &'a str) -> &'a str {
    if plan.trunk == "0" {
        nsn.strip_prefix('0').unwrap_or(nsn)
    } else {
        nsn
    }
}

fn from_national(plan: &Plan, digits: &str) -> Option<String> {
    let nsn = match digits.strip_prefix(plan.trunk) {
        // North America: "1 617 ..." has the trunk 1, "617 ..." none; only 11 digits carry one.
        Some(rest) if plan.trunk == "1" && !fits(plan, digits) => rest,
        Some(_) if plan.trunk == "1" => digits,
        _ => strip_trunk_zero(plan, digits),
    };
    fits(plan, nsn).then(|| format!("+{}{nsn}", plan.cc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_phone_table() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("us 10 digits", "(617) 555-0100", "US", Some("+16175550100")),
            ("us dashes", "617-555-0100", "US", Some("+16175550100")),
            (
                "us with trunk 1",
                "1 617 555 0100",
                "US",
                Some("+16175550100"),
            ),
            ("us padded", "  555 123 4567  ", "US", Some("+15551234567")),
            ("us +1", "+1 (617) 555-0100", "GB", Some("+16175550100")),
            ("ca national", "416-555-0199", "CA", Some("+14165550199")),
            (
                "us extension dropped",
                "617-555-0100 ext. 42",
                "US",
                Some("+16175550100"),
            ),
            (
                "us x extension",
                "617.555.0100x7",
                "US",
                Some("+16175550100"),
            ),
            (
                "us 011 international",
                "011 44 20 7946 0958",
                "US",
                Some("+442079460958"),
            ),
            (
                "us area code 0 kept",
                "0000000000",
                "US",
                Some("0000000000"),
            ),
            ("gb +44", "+44 20 7946 0958", "US", Some("+442079460958")),
            (
                "gb +44 (0)",
                "+44 (0)20 7946 0958",
                "US",
                Some("+442079460958"),
            ),
            ("gb national", "020 7946 0958", "GB", Some("+442079460958")),
            ("gb mobile", "07700 900123", "GB", Some("+447700900123")),
            (
                "00 prefix",
                "0044 20 7946 0958",
                "DE",
                Some("+442079460958"),
            ),
            ("de national", "030 1234567", "DE", Some("+49301234567")),
            ("fr national", "01 23 45 67 89", "FR", Some("+33123456789")),
            ("in national", "098765 43210", "IN", Some("+919876543210")),
            ("in 10 digits", "98765 43210", "IN", Some("+919876543210")),
            ("au national", "(02) 9876 5432", "AU", Some("+61298765432")),
            ("jp national", "03-1234-5678", "JP", Some("+81312345678")),
            (
                "unknown cc generic",
                "+86 138 1234 5678",
                "US",
                Some("+8613812345678"),
            ),
            (
                "russia generic",
                "+7 495 123-45-67",
                "US",
                Some("+74951234567"),
            ),
            (
                "unknown country national",
                "6123 4567",
                "SG",
                Some("61234567"),
            ),
            ("short garbage", "555-12", "US", Some("55512")),
            (
                "too long garbage",
                "12345678901234567890",
                "US",
                Some("12345678901234567890"),
            ),
            ("bad +1", "+1 555 ☎ 1234", "US", Some("15551234")),
            (
                "label then number",
                "Tel: 617 555 0100",
                "US",
                Some("+16175550100"),
            ),
            ("extension only", "ext. 42", "US", Some("42")),
            ("no digits", "call me", "US", None),
            ("n/a", "n/a", "US", None),
            ("empty", "", "US", None),
        ];
        for (name, raw, country, want) in cases {
            assert_eq!(
                normalize_phone(raw, country).as_deref(),
                *want,
                "case {name}"
            );
        }
    }
}
