//! Whether an encoded `ExportTraceServiceRequest` decodes, and its spans' ids, checked where
//! they lie: the receiver's check without building the object tree.
//!
//! It accepts exactly what the full decoder accepts. Every field of every message the request
//! can hold is known here with its wire type (a known field with another wire type is refused),
//! strings must be UTF-8, unknown fields and groups are skipped, and the decoder's recursion
//! limit is kept as it counts it: a message `d` levels down may hold embedded messages and
//! unknown fields only while `d < 100` (and each level of a skipped group counts as one).
//! The tests compare it with the decoder on generated, merged, deeply nested and damaged
//! requests; the fuzz target `otlp_request` keeps comparing them.

use super::super::wire::{take, varint, WireError};

/// The messages of a traces request (opentelemetry-proto, as the decoder is generated from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

/// A known field's type, as far as its encoding goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Varint,
    Fixed64,
    Fixed32,
    Str,
    Bytes,
    Message(Msg),
}

impl Kind {
    fn wire_type(self) -> u64 {
        match self {
            Kind::Varint => 0,
            Kind::Fixed64 => 1,
            Kind::Str | Kind::Bytes | Kind::Message(_) => 2,
            Kind::Fixed32 => 5,
        }
    }
}

/// The type of field `number` of `msg`, if `msg` has such a field.
#[inline]
fn field(msg: Msg, number: u64) -> Option<Kind> {
    use Kind::*;
    Some(match (msg, number) {
        (Msg::Request, 1) => Message(Msg::ResourceSpans),
        (Msg::ResourceSpans, 1) => Message(Msg::Resource),
        (Msg::ResourceSpans, 2) => Message(Msg::ScopeSpans),
        (Msg::ResourceSpans, 3) => Str,
        (Msg::Resource, 1) => Message(Msg::KeyValue),
        (Msg::Resource, 2) => Varint,
        (Msg::Resource, 3) => Message(Msg::EntityRef),
        (Msg::EntityRef, 1..=4) => Str,
        (Msg::ScopeSpans, 1) => Message(Msg::Scope),
        (Msg::ScopeSpans, 2) => Message(Msg::Span),
        (Msg::ScopeSpans, 3) => Str,
        (Msg::Scope, 1 | 2) => Str,
        (Msg::Scope, 3) => Message(Msg::KeyValue),
        (Msg::Scope, 4) => Varint,
        (Msg::Span, 1 | 2 | 4) => Bytes,
        (Msg::Span, 3 | 5) => Str,
        (Msg::Span, 6 | 10 | 12 | 14) => Varint,
        (Msg::Span, 7 | 8) => Fixed64,
        (Msg::Span, 9) => Message(Msg::KeyValue),
        (Msg::Span, 11) => Message(Msg::Event),
        (Msg::Span, 13) => Message(Msg::Link),
        (Msg::Span, 15) => Message(Msg::Status),
        (Msg::Span, 16) => Fixed32,
        (Msg::Event, 1) => Fixed64,
        (Msg::Event, 2) => Str,
        (Msg::Event, 3) => Message(Msg::KeyValue),
        (Msg::Event, 4) => Varint,
        (Msg::Link, 1 | 2) => Bytes,
        (Msg::Link, 3) => Str,
        (Msg::Link, 4) => Message(Msg::KeyValue),
        (Msg::Link, 5) => Varint,
        (Msg::Link, 6) => Fixed32,
        (Msg::Status, 2) => Str,
        (Msg::Status, 3) => Varint,
        (Msg::KeyValue, 1) => Str,
        (Msg::KeyValue, 2) => Message(Msg::AnyValue),
        (Msg::KeyValue, 3) => Varint,
        (Msg::AnyValue, 1) => Str,
        (Msg::AnyValue, 2 | 3 | 8) => Varint,
        (Msg::AnyValue, 4) => Fixed64,
        (Msg::AnyValue, 5) => Message(Msg::ArrayValue),
        (Msg::AnyValue, 6) => Message(Msg::KeyValueList),
        (Msg::AnyValue, 7) => Bytes,
        (Msg::ArrayValue, 1) => Message(Msg::AnyValue),
        (Msg::KeyValueList, 1) => Message(Msg::KeyValue),
        _ => return None,
    })
}

/// The decoder's recursion limit.
const RECURSION_LIMIT: u32 = 100;

/// What a request holds, once checked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SpanCount {
    pub spans: usize,
    /// Spans whose ids break the data model (the receiver's check removes them).
    pub bad_ids: usize,
}

/// Checks that `body` decodes as an `ExportTraceServiceRequest` and counts its spans, and
/// those with ids the OTLP data model refuses (a trace id of other than 16 bytes, a span id of
/// other than 8, a parent span id neither empty nor 8 bytes, or an id of only zeros).
pub fn check_traces(body: &[u8]) -> Result<SpanCount, WireError> {
    let mut count = SpanCount::default();
    message(body, Msg::Request, RECURSION_LIMIT, &mut count)?;
    Ok(count)
}

/// The ids of one span as the decoder would keep them (the last of each).
#[derive(Default)]
struct Ids<'a> {
    trace: &'a [u8],
    span: &'a [u8],
    parent: &'a [u8],
}

fn valid_id(id: &[u8], len: usize) -> bool {
    id.len() == len && id.iter().any(|b| *b != 0)
}

/// The fields of one message; `budget` is the decoder's recursion count at this message.
fn message(mut buf: &[u8], msg: Msg, budget: u32, count: &mut SpanCount) -> Result<(), WireError> {
    let mut ids = Ids::default();
    while !buf.is_empty() {
        let (number, wire_type) = key(&mut buf)?;
        let Some(kind) = field(msg, number) else {
            skip(&mut buf, number, wire_type, budget)?;
            continue;
        };
        if wire_type != kind.wire_type() {
            return Err(WireError("a field of the wrong wire type"));
        }
        match kind {
            Kind::Varint => {
                varint(&mut buf)?;
            }
            Kind::Fixed64 => {
                take(&mut buf, 8)?;
            }
            Kind::Fixed32 => {
                take(&mut buf, 4)?;
            }
            Kind::Str => {
                let s = delimited(&mut buf)?;
                // Mostly ASCII (keys, names, values): checked a word at a time.
                if !s.is_ascii() {
                    std::str::from_utf8(s).map_err(|_| WireError("a string that is not UTF-8"))?;
                }
            }
            Kind::Bytes => {
                let b = delimited(&mut buf)?;
                if msg == Msg::Span {
                    match number {
                        1 => ids.trace = b,
                        2 => ids.span = b,
                        _ => ids.parent = b,
                    }
                }
            }
            Kind::Message(inner) => {
                if budget == 0 {
                    return Err(WireError("messages nested too deep"));
                }
                let b = delimited(&mut buf)?;
                // Most of a request is attributes with a string or an integer value, in the
                // encoders' own layout: checked straight (the AnyValue inside needs a level).
                if inner == Msg::KeyValue && budget >= 2 && plain_key_value(b) {
                    continue;
                }
                message(b, inner, budget - 1, count)?;
            }
        }
    }
    if msg == Msg::Span {
        count.spans += 1;
        let ok = valid_id(ids.trace, 16)
            && valid_id(ids.span, 8)
            && (ids.parent.is_empty() || valid_id(ids.parent, 8));
        count.bad_ids += usize::from(!ok);
    }
    Ok(())
}

/// Whether `kv` is a `KeyValue` laid out as the encoders write it — the key (field 1), then the
/// value (field 2) holding one string (field 1) or integer (field 3), every length under 128 —
/// with both strings UTF-8: then it decodes, and there is nothing more to check. Anything else
/// (and anything wrong) goes the general way, which says what is wrong.
#[inline]
fn plain_key_value(kv: &[u8]) -> bool {
    let [0x0a, key_len, rest @ ..] = kv else {
        return false;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || key_len > rest.len() {
        return false;
    }
    let (key, rest) = rest.split_at(key_len);
    let [0x12, value_len, value @ ..] = rest else {
        return false;
    };
    if *value_len >= 0x80 || usize::from(*value_len) != value.len() || !key.is_ascii() {
        return false;
    }
    match value {
        [0x0a, len, text @ ..] => usize::from(*len) == text.len() && *len < 0x80 && text.is_ascii(),
        [0x18, int @ ..] => {
            let mut int = int;
            varint(&mut int).is_ok() && int.is_empty()
        }
        _ => false,
    }
}

/// A field's key: its number and wire type (0 to 5).
#[inline]
fn key(buf: &mut &[u8]) -> Result<(u64, u64), WireError> {
    let key = varint(buf)?;
    if key > u64::from(u32::MAX) {
        return Err(WireError("field key out of range"));
    }
    if key & 7 > 5 {
        return Err(WireError("unknown wire type"));
    }
    if key >> 3 == 0 {
        return Err(WireError("field number 0"));
    }
    Ok((key >> 3, key & 7))
}

#[inline]
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], WireError> {
    let len = usize::try_from(varint(buf)?).map_err(|_| WireError("length out of range"))?;
    take(buf, len)
}

/// Skips an unknown field as the decoder does, counting group levels against the limit.
fn skip(buf: &mut &[u8], number: u64, wire_type: u64, budget: u32) -> Result<(), WireError> {
    if budget == 0 {
        return Err(WireError("messages nested too deep"));
    }
    match wire_type {
        0 => {
            varint(buf)?;
        }
        1 => {
            take(buf, 8)?;
        }
        2 => {
            delimited(buf)?;
        }
        3 => loop {
            let (inner, inner_type) = key(buf)?;
            if inner_type == 4 {
                if inner != number {
                    return Err(WireError("mismatched end of group"));
                }
                break;
            }
            skip(buf, inner, inner_type, budget - 1)?;
        },
        5 => {
            take(buf, 4)?;
        }
        _ => return Err(WireError("end of a group that was not started")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::wire::{put_len_field, put_varint};
    use crate::otlp::Signal;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    /// The decoder's verdict and the receiver's check, as the wire check should give them.
    fn decoder(body: &[u8]) -> Option<SpanCount> {
        let mut req = ExportTraceServiceRequest::decode(body).ok()?;
        let c = req.check();
        Some(SpanCount {
            spans: c.accepted + c.rejected,
            bad_ids: c.rejected,
        })
    }

    #[test]
    fn nesting_is_limited_where_the_decoder_limits_it() {
        // A span attribute whose value is an array of an array of … (`depth` arrays): the
        // request is 5 levels down at the first AnyValue, 2 more per array.
        fn nested(depth: usize, unknown_inside: bool) -> Vec<u8> {
            let mut any = Vec::new();
            if unknown_inside {
                put_varint(&mut any, 99 << 3);
                put_varint(&mut any, 1);
            } else {
                put_varint(&mut any, 3 << 3);
                put_varint(&mut any, 7);
            }
            for _ in 0..depth {
                let mut array = Vec::new();
                put_len_field(&mut array, 1, &any);
                any.clear();
                put_len_field(&mut any, 5, &array);
            }
            let mut kv = Vec::new();
            put_len_field(&mut kv, 1, b"k");
            put_len_field(&mut kv, 2, &any);
            let mut span = Vec::new();
            put_len_field(&mut span, 1, &[1; 16]);
            put_len_field(&mut span, 2, &[2; 8]);
            put_len_field(&mut span, 9, &kv);
            let mut ss = Vec::new();
            put_len_field(&mut ss, 2, &span);
            let mut rs = Vec::new();
            put_len_field(&mut rs, 2, &ss);
            let mut req = Vec::new();
            put_len_field(&mut req, 1, &rs);
            req
        }
        let mut limits = [None, None];
        for unknown in [false, true] {
            for depth in 40..55 {
                let body = nested(depth, unknown);
                let want = decoder(&body);
                assert_eq!(check_traces(&body).ok(), want, "depth {depth}, {unknown}");
                if want.is_none() && limits[usize::from(unknown)].is_none() {
                    limits[usize::from(unknown)] = Some(depth);
                }
            }
        }
        // The range covers the limit, where both refuse.
        assert_eq!(limits, [Some(48), Some(48)]);
    }

    #[test]
    fn groups_count_against_the_limit() {
        for levels in [1usize, 50, 95, 96, 97, 98, 99, 100, 101, 150] {
            // An unknown field 20 in the request holding `levels` nested groups.
            let mut body = Vec::new();
            for _ in 0..levels {
                put_varint(&mut body, 20 << 3 | 3);
            }
            for _ in 0..levels {
                put_varint(&mut body, 20 << 3 | 4);
            }
            assert_eq!(check_traces(&body).ok(), decoder(&body), "{levels}");
        }
    }

    #[test]
    fn wrong_wire_types_and_strings_are_refused_as_the_decoder_refuses_them() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Span name (a string) that is not UTF-8, and one that is.
        for name in [&b"ok"[..], &[0xff, 0xfe][..]] {
            let mut span = Vec::new();
            put_len_field(&mut span, 1, &[1; 16]);
            put_len_field(&mut span, 2, &[2; 8]);
            put_len_field(&mut span, 5, name);
            cases.push(span);
        }
        // A kind given as fixed32, a start time as a varint, flags as fixed64.
        for (number, wire) in [(6u64, 5u64), (7, 0), (16, 1), (16, 5), (4, 0), (99, 1)] {
            let mut span = Vec::new();
            put_len_field(&mut span, 1, &[1; 16]);
            put_len_field(&mut span, 2, &[2; 8]);
            put_varint(&mut span, number << 3 | wire);
            match wire {
                0 => put_varint(&mut span, 1),
                1 => span.extend_from_slice(&[0; 8]),
                _ => span.extend_from_slice(&[0; 4]),
            }
            cases.push(span);
        }
        // Ids: a zero trace id, a short span id, a parent of 8 bytes, a parent of 3.
        for (t, s, p) in [
            (&[0u8; 16][..], &[2u8; 8][..], &[][..]),
            (&[1; 16][..], &[2; 7][..], &[][..]),
            (&[1; 16][..], &[2; 8][..], &[3; 8][..]),
            (&[1; 16][..], &[2; 8][..], &[3; 3][..]),
        ] {
            let mut span = Vec::new();
            put_len_field(&mut span, 1, t);
            put_len_field(&mut span, 2, s);
            if !p.is_empty() {
                put_len_field(&mut span, 4, p);
            }
            cases.push(span);
        }
        for span in cases {
            let mut ss = Vec::new();
            put_len_field(&mut ss, 2, &span);
            let mut rs = Vec::new();
            put_len_field(&mut rs, 2, &ss);
            let mut body = Vec::new();
            put_len_field(&mut body, 1, &rs);
            assert_eq!(check_traces(&body).ok(), decoder(&body), "{span:?}");
        }
    }

    #[test]
    fn generated_and_damaged_requests_check_as_they_decode() {
        use crate::processors::iforest::forest::Rng;
        let originals: Vec<Vec<u8>> = super::super::tests::requests()
            .iter()
            .map(|r| r.encode_to_vec())
            .collect();
        for body in &originals {
            let c = check_traces(body).unwrap();
            assert!(c.spans > 0);
            assert_eq!(Some(c), decoder(body));
        }
        let mut rng = Rng::new(5);
        let (mut taken, mut refused) = (0, 0);
        for i in 0..6000 {
            let body = super::super::tests::damaged(&originals[i % originals.len()], &mut rng);
            let want = decoder(&body);
            assert_eq!(check_traces(&body).ok(), want, "case {i}");
            match want {
                Some(_) => taken += 1,
                None => refused += 1,
            }
        }
        assert!(
            taken > 100 && refused > 100,
            "{taken} taken, {refused} refused"
        );
    }
}
