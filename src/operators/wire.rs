//! Reading a CRM record's JSON, shared by the Bullhorn and HubSpot transforms: [`parse`] reads
//! the record into the transform's wire type (a delete is never rejected: anything unreadable
//! becomes an empty record, so the tombstone is still written), and the field types read values
//! the way CRMs send them.
//!
//! [`ScalarText`] is a JSON scalar read as text: a string (borrowed from the input unless it had
//! escapes), a number or a boolean kept as its text (ids are numbers; older integrations send
//! numbers where strings were promised), or null. The transforms parse the text themselves, so a
//! value of the wrong kind is a reject that names its field. `ARRAYS`: whether an array stands for
//! its first element (Bullhorn's `Strings`: `status` comes as `["Active"]`) or is a shape error
//! like an object (HubSpot's properties).
//!
//! Bullhorn's typed values are read leniently too, as its API and search index send them:
//! [`Num`] (a number or a numeric string), [`Int`] and [`Count`] (integers, integral floats or
//! digits), [`Flag`] (a boolean, 0/1 or their text). A value that is none of these is an error
//! the transform turns into a `record.shape` reject.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

use super::bullhorn::RecordKey;
use super::validate::Rule;
use super::Reject;

/// Parses the record; for a delete, anything unreadable becomes an empty record so the tombstone is
/// still written (a delete must never be rejected).
pub fn parse<'a, T: Deserialize<'a> + Default>(
    record: &'a str,
    key: &RecordKey<'_>,
) -> Result<T, Reject> {
    // serde's derived structs also accept a JSON array (as a tuple), which no record is.
    let object = record.trim_start().starts_with('{');
    match serde_json::from_str(record) {
        Ok(v) if object => Ok(v),
        _ if key.deleted => Ok(T::default()),
        Ok(_) => Err(Rule::RecordShape.reject("the record is not a JSON object")),
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data if object => Rule::RecordShape.reject(e.to_string()),
            serde_json::error::Category::Data => {
                Rule::RecordShape.reject(format!("the record is not a JSON object: {e}"))
            }
            _ => Rule::RecordJson.reject(e.to_string()),
        }),
    }
}

/// A scalar as text, or `None` for null.
#[derive(Default)]
pub struct ScalarText<'a, const ARRAYS: bool>(Option<Cow<'a, str>>);

impl<const ARRAYS: bool> ScalarText<'_, ARRAYS> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a, const ARRAYS: bool> Deserialize<'de> for ScalarText<'a, ARRAYS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const ARRAYS: bool>;
        impl<'de, const ARRAYS: bool> Visitor<'de> for V<ARRAYS> {
            type Value = ScalarText<'de, ARRAYS>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(if ARRAYS {
                    "text, an array of text, a number or null"
                } else {
                    "a string or null"
                })
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Owned(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Owned(v.to_string()))))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ScalarText(Some(Cow::Borrowed(if v {
                    "true"
                } else {
                    "false"
                }))))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ScalarText(None))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(ScalarText(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                if !ARRAYS {
                    return Err(de::Error::invalid_type(Unexpected::Seq, &self));
                }
                let first = seq
                    .next_element::<ScalarText<'de, ARRAYS>>()?
                    .unwrap_or_default();
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(first)
            }
        }
        d.deserialize_any(V::<ARRAYS>)
    }
}

/// A decimal: a JSON number or a numeric string (`"35.0000"`); empty string or null is absent.
#[derive(Default)]
pub struct Num(pub Option<f64>);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a numeric string or null")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Num, E> {
                Ok(Num(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Some(v as f64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(Num(None));
                }
                match t.parse::<f64>() {
                    // "NaN" and "inf" parse as f64 but are no amount of money.
                    Ok(x) if x.is_finite() => Ok(Num(Some(x))),
                    _ => Err(E::custom(format!("`{v}` is not a number"))),
                }
            }
            fn visit_unit<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
            fn visit_none<E>(self) -> Result<Num, E> {
                Ok(Num(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer (epoch ms, an id): a JSON integer, an integral float, or a string of digits.
#[derive(Default)]
pub struct Int(pub Option<i64>);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer, a string of digits or null")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Int, E> {
                Ok(Int(Some(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(|v| Int(Some(v)))
                    .map_err(|_| E::custom(format!("{v} is out of range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Int, E> {
                if v.fract() == 0.0 && v.abs() < 9.0e15 {
                    Ok(Int(Some(v as i64)))
                } else {
                    Err(E::custom(format!("{v} is not an integer")))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                let t = v.trim();
                if t.is_empty() {
                    return Ok(Int(None));
                }
                t.parse()
                    .map(|v| Int(Some(v)))
                    .map_err(|_| E::custom(format!("`{v}` is not an integer")))
            }
            fn visit_unit<E>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
            fn visit_none<E>(self) -> Result<Int, E> {
                Ok(Int(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// A small count (`numOpenings`) that must fit the canonical `int`.
#[derive(Default)]
pub struct Count(pub Option<i32>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Int::deserialize(d)?.0 {
            None => Ok(Count(None)),
            Some(v) => i32::try_from(v)
                .map(|v| Count(Some(v)))
                .map_err(|_| de::Error::custom(format!("{v} is out of range for a count"))),
        }
    }
}

/// A boolean: `true`/`false`, 0/1 (the search index stores booleans that way), or their strings.
#[derive(Default)]
pub struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean, 0 or 1, or null")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                match v {
                    0 => Ok(Flag(Some(false))),
                    1 => Ok(Flag(Some(true))),
                    _ => Err(E::custom(format!("{v} is not a boolean"))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                match v.trim() {
                    "" => Ok(Flag(None)),
                    t if t.eq_ignore_ascii_case("true") || t == "1" => Ok(Flag(Some(true))),
                    t if t.eq_ignore_ascii_case("false") || t == "0" => Ok(Flag(Some(false))),
                    _ => Err(E::custom(format!("`{v}` is not a boolean"))),
                }
            }
            fn visit_unit<E>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
            fn visit_none<E>(self) -> Result<Flag, E> {
                Ok(Flag(None))
            }
        }
        d.deserialize_any(V)
    }
}
