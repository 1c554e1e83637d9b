//! The Avro specification's *Parsing Canonical Form* and its CRC-64-AVRO (Rabin) fingerprint,
//! written from the specification rather than taken from the apache-avro crate, whose canonical
//! form keeps `logicalType` (so its fingerprint of any schema with a logical type differs from
//! what Java's `SchemaNormalization.parsingFingerprint64`, fastavro and the spec give).
//!
//! The transformation (spec, "Transforming into Parsing Canonical Form"): PRIMITIVES (a
//! `{"type":"long", ...}` object becomes `"long"`), FULLNAMES (names become full names,
//! `namespace` dropped), STRIP (only `type`, `name`, `fields`, `symbols`, `items`, `values`,
//! `size` are kept — `doc`, `default`, `aliases`, `logicalType`, ... go), ORDER (those keys in
//! that order), STRINGS / INTEGERS / WHITESPACE (plain JSON, no blanks). A named type is spelled
//! out at its first occurrence and referred to by full name afterwards.
//!
//! `tests/data/avro_fingerprints.json` holds fastavro's canonical forms and fingerprints of
//! every file in `schemas/` (made by `scripts/avro-reference`); the tests compare against them.

use std::collections::HashSet;

use serde_json::Value;

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Why a schema text has no canonical form.
#[derive(Debug, thiserror::Error)]
pub enum PcfError {
    #[error("schema is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("schema element has no usable {0}")]
    Missing(&'static str),
}

/// The Parsing Canonical Form of a schema text.
pub fn canonical_form(schema: &str) -> Result<String, PcfError> {
    let v: Value = serde_json::from_str(schema)?;
    let mut out = String::with_capacity(schema.len());
    let mut seen = HashSet::new();
    write(&v, "", &mut seen, &mut out)?;
    Ok(out)
}

/// The 64-bit CRC-64-AVRO fingerprint of `bytes` (the spec's reference algorithm).
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    static TABLE: std::sync::LazyLock<[u64; 256]> = std::sync::LazyLock::new(|| {
        let mut t = [0u64; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut fp = i as u64;
            for _ in 0..8 {
                fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
            }
            *slot = fp;
        }
        t
    });
    let mut fp = EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// The single-object encoding's header fingerprint of a schema text: CRC-64-AVRO of its
/// canonical form, little-endian.
pub fn fingerprint(schema: &str) -> Result<[u8; 8], PcfError> {
    Ok(crc64_avro(canonical_form(schema)?.as_bytes()).to_le_bytes())
}

/// Full name of `name` declared in (or referred to from) namespace `ns`.
fn full_name(name: &str, ns: &str) -> String {
    if name.contains('.') || ns.is_empty() {
        name.to_owned()
    } else {
        format!("{ns}.{name}")
    }
}

fn push_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::to_string(s).expect("a string serializes"));
}

fn write(
    v: &Value,
    ns: &str,
    seen: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), PcfError> {
    match v {
        Value::String(s) => {
            if PRIMITIVES.contains(&s.as_str()) {
                push_str(out, s);
            } else {
                push_str(out, &full_name(s, ns));
            }
        }
        Value::Array(branches) => {
            out.push('[');
            for (i, b) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(b, ns, seen, out)?;
            }
            out.push(']');
        }
        Value::Object(o) => {
            let ty = o.get("type").ok_or(PcfError::Missing("type"))?;
            let Value::String(ty) = ty else {
                // `{"type": {...}}` or `{"type": [...]}`: the wrapper adds nothing.
                return write(ty, ns, seen, out);
            };
            match ty.as_str() {
                "record" | "error" | "enum" | "fixed" => {
                    let name = o
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or(PcfError::Missing("name"))?;
                    let own_ns = o.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                    let full = full_name(name, own_ns);
                    if !seen.insert(full.clone()) {
                        push_str(out, &full);
                        return Ok(());
                    }
                    // Names inside resolve against this type's namespace.
                    let inner_ns = full.rsplit_once('.').map_or("", |(n, _)| n).to_owned();
                    out.push_str("{\"name\":");
                    push_str(out, &full);
                    out.push_str(",\"type\":");
                    push_str(out, if ty == "error" { "record" } else { ty });
                    match ty.as_str() {
                        "enum" => {
                            out.push_str(",\"symbols\":");
                            let symbols = o.get("symbols").ok_or(PcfError::Missing("symbols"))?;
                            out.push_str(&serde_json::to_string(symbols)?);
                        }
                        "fixed" => {
                            let size = o
                                .get("size")
                                .and_then(Value::as_u64)
                                .ok_or(PcfError::Missing("size"))?;
                            out.push_str(&format!(",\"size\":{size}"));
                        }
                        _ => {
                            out.push_str(",\"fields\":[");
                            let fields = o
                                .get("fields")
                                .and_then(Value::as_array)
                                .ok_or(PcfError::Missing("fields"))?;
                            for (i, f) in fields.iter().enumerate() {
                                if i > 0 {
                                    out.push(',');
                                }
                                let fname = f
                                    .get("name")
                                    .and_then(Value::as_str)
                                    .ok_or(PcfError::Missing("field name"))?;
                                out.push_str("{\"name\":");
                                push_str(out, fname);
                                out.push_str(",\"type\":");
                                write(
                                    f.get("type").ok_or(PcfError::Missing("field type"))?,
                                    &inner_ns,
                                    seen,
                                    out,
                                )?;
                                out.push('}');
                            }
                            out.push(']');
                        }
                    }
                    out.push('}');
                }
                "array" => {
                    out.push_str("{\"type\":\"array\",\"items\":");
                    write(
                        o.get("items").ok_or(PcfError::Missing("items"))?,
                        ns,
                        seen,
                        out,
                    )?;
                    out.push('}');
                }
                "map" => {
                    out.push_str("{\"type\":\"map\",\"values\":");
                    write(
                        o.get("values").ok_or(PcfError::Missing("values"))?,
                        ns,
                        seen,
                        out,
                    )?;
                    out.push('}');
                }
                // PRIMITIVES: every other attribute (logicalType included) is dropped; a name
                // reference in object form resolves like a bare one.
                other => write(&Value::String(other.to_owned()), ns, seen, out)?,
            }
        }
        _ => return Err(PcfError::Missing("type")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        // The spec's published fingerprint of `"int"`.
        assert_eq!(crc64_avro(br#""int""#), 0x7275_d51a_3f39_5c8f);
        assert_eq!(canonical_form(r#"{"type":"long"}"#).unwrap(), r#""long""#);
        assert_eq!(
            canonical_form(r#"{"type":"long","logicalType":"timestamp-millis"}"#).unwrap(),
            r#""long""#
        );
        assert_eq!(
            canonical_form(
                r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
                    {"name":"f","type":{"type":"enum","name":"E","symbols":["X","Y"]},"default":"X"},
                    {"name":"g","type":["null","E",{"type":"map","values":"c.D"}]},
                    {"name":"h","type":{"type":"fixed","name":"F","size":16,"aliases":["q"]}},
                    {"name":"i","type":{"type":"array","items":"F"}}]}"#
            )
            .unwrap(),
            concat!(
                r#"{"name":"a.b.R","type":"record","fields":["#,
                r#"{"name":"f","type":{"name":"a.b.E","type":"enum","symbols":["X","Y"]}},"#,
                r#"{"name":"g","type":["null","a.b.E",{"type":"map","values":"c.D"}]},"#,
                r#"{"name":"h","type":{"name":"a.b.F","type":"fixed","size":16}},"#,
                r#"{"name":"i","type":{"type":"array","items":"a.b.F"}}]}"#
            )
        );
    }
}
