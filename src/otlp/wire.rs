//! Protobuf as it lies in a buffer: a message's fields one at a time, their values borrowed
//! from the buffer, nothing allocated. What the wire split and the span view are built on.
//!
//! The reader accepts what the full decoder accepts at this level: the four wire types, groups
//! (skipped as a whole, as unknown fields are), varints of up to ten bytes; it refuses field
//! number 0, lengths beyond the buffer and unterminated groups.

/// Why a buffer could not be read as protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not valid protobuf: {0}")]
pub struct WireError(pub &'static str);

/// A field's value as it lies in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    /// Length-delimited: a string, bytes, an embedded message or a packed repeated field.
    Bytes(&'a [u8]),
    Fixed32(u32),
    /// A (deprecated) group, skipped whole: its fields, without the end marker.
    Group(&'a [u8]),
}

/// One field: its number, its value and the bytes it took (key included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    pub number: u64,
    pub value: Value<'a>,
    pub raw: &'a [u8],
}

/// The fields of one message, in the order they lie; after an error, nothing more.
pub struct Fields<'a> {
    buf: &'a [u8],
    failed: bool,
}

/// Reads the fields of the message `buf` holds.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, failed: false }
}

/// Nested groups deeper than this are refused (the full decoder's recursion limit).
const MAX_GROUP_DEPTH: usize = 100;

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let start = self.buf;
        let read = read_field(&mut self.buf, 0);
        match read {
            Ok((number, value)) => {
                let used = start.len() - self.buf.len();
                Some(Ok(Field {
                    number,
                    value,
                    raw: &start[..used],
                }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[inline]
fn read_field<'a>(buf: &mut &'a [u8], depth: usize) -> Result<(u64, Value<'a>), WireError> {
    let key = varint(buf)?;
    let number = key >> 3;
    if number == 0 || number > u64::from(u32::MAX >> 3) {
        return Err(WireError("field number out of range"));
    }
    let value = match key & 7 {
        0 => Value::Varint(varint(buf)?),
        1 => Value::Fixed64(u64::from_le_bytes(fixed(take(buf, 8)?))),
        2 => {
            let len = usize::try_from(varint(buf)?).map_err(|_| WireError("length"))?;
            Value::Bytes(take(buf, len)?)
        }
        3 => read_group(buf, number, depth)?,
        4 => return Err(WireError("end of a group that was not started")),
        5 => Value::Fixed32(u32::from_le_bytes(fixed(take(buf, 4)?))),
        _ => return Err(WireError("unknown wire type")),
    };
    Ok((number, value))
}

/// A group's fields up to its end marker (rare: kept out of the common path).
#[cold]
fn read_group<'a>(buf: &mut &'a [u8], number: u64, depth: usize) -> Result<Value<'a>, WireError> {
    if depth >= MAX_GROUP_DEPTH {
        return Err(WireError("groups nested too deep"));
    }
    let inside = *buf;
    loop {
        if buf.is_empty() {
            return Err(WireError("unterminated group"));
        }
        let before = *buf;
        let key = varint(&mut { before })?;
        if key & 7 == 4 {
            if key >> 3 != number {
                return Err(WireError("mismatched end of group"));
            }
            let body = &inside[..inside.len() - before.len()];
            varint(buf)?;
            return Ok(Value::Group(body));
        }
        read_field(buf, depth + 1)?;
    }
}

#[inline]
fn fixed<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

/// The next `n` bytes.
#[inline]
pub fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < n {
        return Err(WireError("truncated"));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// A varint of at most ten bytes.
#[inline]
pub fn varint(buf: &mut &[u8]) -> Result<u64, WireError> {
    // Keys, lengths and small numbers: one byte.
    if let Some((&b, rest)) = buf.split_first() {
        if b < 0x80 {
            *buf = rest;
            return Ok(u64::from(b));
        }
    }
    varint_long(buf)
}

fn varint_long(buf: &mut &[u8]) -> Result<u64, WireError> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or(WireError("truncated varint"))?;
        *buf = rest;
        // The tenth byte holds the 64th bit only.
        if shift == 63 && b > 1 {
            return Err(WireError("varint too long"));
        }
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError("varint too long"))
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
pub fn put_len_field(out: &mut Vec<u8>, number: u64, value: &[u8]) {
    put_varint(out, number << 3 | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_type_reads_and_groups_are_skipped_whole() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 1 << 3); // 1: varint 300
        put_varint(&mut buf, 300);
        put_varint(&mut buf, 2 << 3 | 1); // 2: fixed64
        buf.extend_from_slice(&7u64.to_le_bytes());
        put_len_field(&mut buf, 3, b"abc"); // 3: bytes
        put_varint(&mut buf, 4 << 3 | 3); // 4: a group holding field 1 = 5
        put_varint(&mut buf, 1 << 3);
        put_varint(&mut buf, 5);
        put_varint(&mut buf, 4 << 3 | 4);
        put_varint(&mut buf, 5 << 3 | 5); // 5: fixed32
        buf.extend_from_slice(&9u32.to_le_bytes());
        let got: Vec<(u64, Value)> = fields(&buf)
            .map(|f| f.map(|f| (f.number, f.value)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            [
                (1, Value::Varint(300)),
                (2, Value::Fixed64(7)),
                (3, Value::Bytes(b"abc")),
                (4, Value::Group(&[8, 5])),
                (5, Value::Fixed32(9)),
            ]
        );
        let raw: usize = fields(&buf).map(|f| f.unwrap().raw.len()).sum();
        assert_eq!(raw, buf.len());
    }

    #[test]
    fn broken_buffers_are_refused() {
        for bad in [
            &[0x08][..],         // a varint field without its value
            &[0x0a, 0x05, 1, 2], // a length beyond the buffer
            &[0x00, 0x01],       // field number 0
            &[0x1b, 0x08, 0x01], // a group without its end
            &[0x1b, 0x24],       // a group ended by another number
            &[0x0c],             // an end of group out of nowhere
            &[0x0e],             // wire type 6
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ], // 11 bytes
        ] {
            let last = fields(bad).last().unwrap();
            assert!(last.is_err(), "{bad:?} read as {last:?}");
        }
    }
}
