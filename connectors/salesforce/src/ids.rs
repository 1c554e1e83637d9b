//! Salesforce record ids: a 15-character case-sensitive id (3-character key prefix, 2-character pod, 1
//! reserved character, 9 base-62 digits) and its 18-character case-safe form, which appends a 3-character
//! checksum so ids that differ only in case stay distinct in case-insensitive tools.
//!
//! The checksum: split the 15 characters into three chunks of five; in each chunk, character `i` (0-based)
//! sets bit `i` when it is an uppercase ASCII letter; the 5-bit number indexes `A..Z0..5`.

/// The alphabet the checksum characters come from.
const CHECKSUM_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// Base-62 digits in ASCII order, so a numeric order is also the byte order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a Salesforce id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not 15 or 18 characters.
    #[error("a Salesforce id has 15 or 18 characters, got {0}")]
    Length(usize),
    /// A character outside `[0-9A-Za-z]`.
    #[error("a Salesforce id holds only ASCII letters and digits")]
    Character,
    /// An 18-character id whose suffix does not match its first 15 characters.
    #[error("checksum suffix {got} does not match (expected {expected})")]
    Checksum {
        /// The suffix given.
        got: String,
        /// The suffix computed.
        expected: String,
    },
}

/// The 3-character checksum suffix of a 15-character id.
pub fn checksum(id15: &str) -> Result<String, IdError> {
    let bytes = id15.as_bytes();
    if bytes.len() != 15 {
        return Err(IdError::Length(bytes.len()));
    }
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(IdError::Character);
    }
    let mut out = String::with_capacity(3);
    for chunk in bytes.chunks(5) {
        let mut bits = 0usize;
        for (i, c) in chunk.iter().enumerate() {
            if c.is_ascii_uppercase() {
                bits |= 1 << i;
            }
        }
        out.push(CHECKSUM_ALPHABET[bits] as char);
    }
    Ok(out)
}

/// The 18-character form of a 15- or 18-character id (an 18-character id is checked, not trusted).
pub fn to18(id: &str) -> Result<String, IdError> {
    match id.len() {
        15 => Ok(format!("{id}{}", checksum(id)?)),
        18 => {
            let expected = checksum(&id[..15])?;
            // The suffix is case-insensitive by design.
            if id[15..].eq_ignore_ascii_case(&expected) {
                Ok(format!("{}{expected}", &id[..15]))
            } else {
                Err(IdError::Checksum {
                    got: id[15..].to_string(),
                    expected,
                })
            }
        }
        n => Err(IdError::Length(n)),
    }
}

/// The 15-character case-sensitive form.
pub fn to15(id: &str) -> Result<String, IdError> {
    Ok(to18(id)?[..15].to_string())
}

/// Whether `id` is a well-formed 15- or 18-character id.
pub fn is_valid(id: &str) -> bool {
    to18(id).is_ok()
}

/// The 3-character key prefix naming the object type (`003` Contact, `005` User, `00D` Organization).
pub fn key_prefix(id: &str) -> &str {
    id.get(..3).unwrap_or(id)
}

/// Builds the 18-character id number `n` of an object: `prefix` (3 characters) + `pod` (2) + `0` +
/// 9 base-62 digits of `n` + checksum.
pub fn make(prefix: &str, pod: &str, n: u64) -> String {
    debug_assert_eq!(prefix.len(), 3);
    debug_assert_eq!(pod.len(), 2);
    let mut digits = [b'0'; 9];
    let mut v = n;
    for d in digits.iter_mut().rev() {
        *d = BASE62[(v % 62) as usize];
        v /= 62;
    }
    let id15 = format!(
        "{prefix}{pod}0{}",
        std::str::from_utf8(&digits).unwrap_or("000000000")
    );
    // The alphabet is alphanumeric and the length fixed, so the checksum cannot fail.
    let sum = checksum(&id15).unwrap_or_default();
    format!("{id15}{sum}")
}

/// The org id (`00D...`, 15 characters) an access token starts with (`00D..!AQ..`), if it has that shape.
pub fn org_id_of_token(token: &str) -> Option<&str> {
    let (org, _) = token.split_once('!')?;
    (org.len() == 15 && org.starts_with("00D") && is_valid(org)).then_some(org)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_real_ids() {
        // Ids quoted in Salesforce's documentation and captured responses.
        for id in [
            "003RO0000035WQgYAM",
            "001xx000003DGb1AAG",
            "001xx000003DGb0AAG",
            "a00D0000008pQR5IAM",
            "a00D0000008pQRAIA2",
        ] {
            assert_eq!(to18(&id[..15]).unwrap(), id, "{id}");
            assert_eq!(to18(id).unwrap(), id);
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(to18("003"), Err(IdError::Length(3)));
        assert_eq!(to18("003RO0000035WQ!"), Err(IdError::Character));
        assert!(matches!(
            to18("003RO0000035WQgAAA"),
            Err(IdError::Checksum { .. })
        ));
        // The suffix is case-insensitive.
        assert_eq!(to18("003RO0000035WQgyam").unwrap(), "003RO0000035WQgYAM");
    }

    #[test]
    fn make_orders_like_numbers() {
        let a = make("003", "5g", 61);
        let b = make("003", "5g", 62);
        let c = make("003", "5g", 1_000_000);
        assert!(a < b && b < c, "{a} {b} {c}");
        for id in [&a, &b, &c] {
            assert_eq!(id.len(), 18);
            assert!(is_valid(id));
            assert_eq!(key_prefix(id), "003");
        }
    }

    #[test]
    fn org_id_from_token() {
        let org = make("00D", "5g", 7);
        let token = format!("{}!AQ4AQFakeToken", &org[..15]);
        assert_eq!(org_id_of_token(&token), Some(&org[..15]));
        assert_eq!(org_id_of_token("plain-token"), None);
    }
}
