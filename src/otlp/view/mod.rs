//! The spans of an encoded `ExportTraceServiceRequest`, read where they lie: for each span its
//! resource's `service.name`, trace id, kind, times, status code and attributes, without
//! building the request's object tree (no allocation per span). What detection reads of a span
//! is a handful of fields; the full decode makes a heap string of every attribute.
//!
//! Read as the full decoder reads: fields in any order, repeated scalar fields (the last one
//! counts), an embedded message given more than once (merged: its fields from every
//! occurrence, the last of each), unknown fields and groups skipped, the first attribute with
//! a key found (as a lookup in the decoded attribute list finds it). A string the view returns
//! or compares is checked as UTF-8, as the decoder checks every string.
//!
//! Field numbers (opentelemetry-proto): request 1 resource_spans; ResourceSpans 1 resource,
//! 2 scope_spans; Resource 1 attributes; ScopeSpans 2 spans; Span 1 trace_id, 6 kind,
//! 7 start_time_unix_nano, 8 end_time_unix_nano, 9 attributes, 15 status; Status 3 code;
//! KeyValue 1 key, 2 value; AnyValue 1 string, 2 bool, 3 int, 4 double.

mod check;

pub use check::{check_traces, SpanCount};

use super::wire::{fields, Value, WireError};

/// An attribute's value, as far as detection reads values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    /// An array, a key-value list or bytes (or no value).
    Other,
}

/// Attributes as they lie: the attribute fields of one or more messages (a resource given
/// twice has two).
#[derive(Debug, Clone, Copy)]
pub struct Attrs<'r, 'a> {
    /// The messages holding the attributes, and the field number of the attributes in them.
    messages: &'r [&'a [u8]],
    number: u64,
}

impl<'a> Attrs<'_, 'a> {
    /// The first attribute with this key.
    pub fn get(&self, key: &str) -> Result<Option<AttrValue<'a>>, WireError> {
        for m in self.messages {
            for f in fields(m) {
                let f = f?;
                let (true, Value::Bytes(kv)) = (f.number == self.number, f.value) else {
                    continue;
                };
                let parts = kv_parts(kv)?;
                if parts.key == key.as_bytes() {
                    return Ok(Some(parts.value(kv)?));
                }
            }
        }
        Ok(None)
    }

    /// The first attribute with each of `keys`, in one pass.
    pub fn get_many<const N: usize>(
        &self,
        keys: [&str; N],
    ) -> Result<[Option<AttrValue<'a>>; N], WireError> {
        let mut out = [None; N];
        let mut left = N;
        for m in self.messages {
            for f in fields(m) {
                let f = f?;
                let (true, Value::Bytes(kv)) = (f.number == self.number, f.value) else {
                    continue;
                };
                let parts = kv_parts(kv)?;
                for (i, want) in keys.iter().enumerate() {
                    if out[i].is_none() && parts.key == want.as_bytes() {
                        out[i] = Some(parts.value(kv)?);
                        left -= 1;
                    }
                }
                if left == 0 {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The first attribute with this key, if it is a string.
    pub fn str(&self, key: &str) -> Result<Option<&'a str>, WireError> {
        Ok(match self.get(key)? {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        })
    }
}

/// A `KeyValue` as the decoder keeps it: its (last) key, compared as bytes (equal to a `str`,
/// it is UTF-8; none is the empty key), and its value field.
struct KvParts<'a> {
    key: &'a [u8],
    /// The last value field, and whether there was more than one (to be merged).
    value: Option<&'a [u8]>,
    more_values: bool,
}

impl<'a> KvParts<'a> {
    /// The value, read from `kv` (the message these parts came from).
    fn value(&self, kv: &'a [u8]) -> Result<AttrValue<'a>, WireError> {
        let Some(v) = self.value else {
            return Ok(AttrValue::Other);
        };
        if !self.more_values {
            return any_value(v, AttrValue::Other);
        }
        // A value given twice is merged: the later one-of replaces the earlier, rarely seen;
        // read every occurrence in order.
        let mut out = AttrValue::Other;
        for f in fields(kv) {
            let f = f?;
            if let (2, Value::Bytes(b)) = (f.number, f.value) {
                out = any_value(b, out)?;
            }
        }
        Ok(out)
    }
}

/// The parts of a `KeyValue`. The encoders' own layout (the key, then the value, each once,
/// lengths under 128) is read straight; anything else field by field.
#[inline]
fn kv_parts(kv: &[u8]) -> Result<KvParts<'_>, WireError> {
    if let [0x0a, key_len, rest @ ..] = kv {
        let key_len = usize::from(*key_len);
        if key_len < 0x80 && key_len <= rest.len() {
            let (key, rest) = rest.split_at(key_len);
            if let [0x12, value_len, value @ ..] = rest {
                if *value_len < 0x80 && usize::from(*value_len) == value.len() {
                    return Ok(KvParts {
                        key,
                        value: Some(value),
                        more_values: false,
                    });
                }
            }
        }
    }
    let mut parts = KvParts {
        key: b"",
        value: None,
        more_values: false,
    };
    for f in fields(kv) {
        let f = f?;
        match (f.number, f.value) {
            (1, Value::Bytes(b)) => parts.key = b,
            (2, Value::Bytes(b)) => {
                parts.more_values |= parts.value.is_some();
                parts.value = Some(b);
            }
            (3, Value::Varint(_)) => {}
            (1..=3, _) => return Err(WireError("wrong wire type in a KeyValue")),
            _ => {}
        }
    }
    Ok(parts)
}

/// An `AnyValue`, merged over `prior`: its last one-of field wins.
fn any_value<'a>(b: &'a [u8], prior: AttrValue<'a>) -> Result<AttrValue<'a>, WireError> {
    let mut out = prior;
    for f in fields(b) {
        let f = f?;
        out = match (f.number, f.value) {
            (1, Value::Bytes(s)) => AttrValue::Str(
                std::str::from_utf8(s).map_err(|_| WireError("a string that is not UTF-8"))?,
            ),
            (2, Value::Varint(v)) => AttrValue::Bool(v != 0),
            (3, Value::Varint(v)) => AttrValue::Int(v as i64),
            (4, Value::Fixed64(v)) => AttrValue::Double(f64::from_bits(v)),
            (5..=7, Value::Bytes(_)) | (8, Value::Varint(_)) => AttrValue::Other,
            (1..=8, _) => return Err(WireError("wrong wire type in an AnyValue")),
            _ => out,
        };
    }
    Ok(out)
}

/// One span as detection reads it.
#[derive(Debug, Clone, Copy)]
pub struct SpanView<'a> {
    /// Empty when the span has none.
    pub trace_id: &'a [u8],
    /// Empty when the span has none.
    pub span_id: &'a [u8],
    /// Empty for a root span.
    pub parent_span_id: &'a [u8],
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// The status code (0 when there is no status).
    pub status_code: i32,
    raw: &'a [u8],
}

impl<'a> SpanView<'a> {
    fn read(raw: &'a [u8]) -> Result<Self, WireError> {
        let mut s = SpanView {
            trace_id: b"",
            span_id: b"",
            parent_span_id: b"",
            kind: 0,
            start_time_unix_nano: 0,
            end_time_unix_nano: 0,
            status_code: 0,
            raw,
        };
        for f in fields(raw) {
            let f = f?;
            match (f.number, f.value) {
                (1, Value::Bytes(b)) => s.trace_id = b,
                (2, Value::Bytes(b)) => s.span_id = b,
                (4, Value::Bytes(b)) => s.parent_span_id = b,
                (6, Value::Varint(v)) => s.kind = v as i32,
                (7, Value::Fixed64(v)) => s.start_time_unix_nano = v,
                (8, Value::Fixed64(v)) => s.end_time_unix_nano = v,
                (15, Value::Bytes(b)) => {
                    for g in fields(b) {
                        let g = g?;
                        match (g.number, g.value) {
                            (3, Value::Varint(v)) => s.status_code = v as i32,
                            (3, _) => return Err(WireError("wrong wire type in a Status")),
                            _ => {}
                        }
                    }
                }
                (9, Value::Bytes(_)) => {}
                (1 | 2 | 4 | 6 | 7 | 8 | 9 | 15, _) => {
                    return Err(WireError("wrong wire type in a Span"));
                }
                _ => {}
            }
        }
        Ok(s)
    }

    /// The span's attributes.
    pub fn attributes(&self) -> Attrs<'_, 'a> {
        Attrs {
            messages: std::slice::from_ref(&self.raw),
            number: 9,
        }
    }
}

/// A resource as the spans under it see it.
pub struct Resource<'r, 'a> {
    pub attributes: Attrs<'r, 'a>,
    /// Its `service.name`, when that is a non-empty string.
    pub service: Option<&'a str>,
}

/// Every span of an encoded traces request with its resource, in order.
pub fn for_each_span<'a>(
    body: &'a [u8],
    mut f: impl FnMut(&Resource<'_, 'a>, SpanView<'a>),
) -> Result<(), WireError> {
    let mut resources: Vec<&'a [u8]> = Vec::new();
    for rs in fields(body) {
        let rs = rs?;
        let Value::Bytes(rs) = (match rs.number {
            1 => rs.value,
            _ => continue,
        }) else {
            return Err(WireError("wrong wire type in a request"));
        };
        // The resource first, wherever it lies (and merged if it is given more than once).
        resources.clear();
        for g in fields(rs) {
            let g = g?;
            match (g.number, g.value) {
                (1, Value::Bytes(b)) => resources.push(b),
                (2, Value::Bytes(_)) => {}
                (1 | 2, _) => return Err(WireError("wrong wire type in resource spans")),
                _ => {}
            }
        }
        let attributes = Attrs {
            messages: &resources,
            number: 1,
        };
        let service = match attributes.get("service.name")? {
            Some(AttrValue::Str(s)) if !s.is_empty() => Some(s),
            _ => None,
        };
        let resource = Resource {
            attributes,
            service,
        };
        for g in fields(rs) {
            let g = g?;
            let (2, Value::Bytes(ss)) = (g.number, g.value) else {
                continue;
            };
            for h in fields(ss) {
                let h = h?;
                match (h.number, h.value) {
                    (2, Value::Bytes(span)) => f(&resource, SpanView::read(span)?),
                    (2, _) => return Err(WireError("wrong wire type in scope spans")),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
