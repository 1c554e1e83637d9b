//! A JSON scalar read as text, the way CRMs send values: a string (borrowed from the input unless
//! it had escapes), a number or a boolean kept as its text (ids are numbers; older integrations
//! send numbers where strings were promised), or null. The CRM transforms deserialize their wire
//! types' fields into it ([`super::bullhorn`]'s `Text`, [`super::hubspot`]'s `Prop`) and parse the
//! text themselves, so a value of the wrong kind is a reject that names its field.
//!
//! `ARRAYS`: whether an array stands for its first element (Bullhorn's `Strings`: `status` comes
//! as `["Active"]`) or is a shape error like an object (HubSpot's properties).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;

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
