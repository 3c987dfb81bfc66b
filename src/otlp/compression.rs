//! Bounded decompression for OTLP/HTTP bodies: a small compressed body must not expand past the
//! configured limit (a "zip bomb" is refused with 413, not buffered).

use std::io::Read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
    Deflate,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecompressError {
    #[error("unsupported Content-Encoding {0:?} (gzip, zstd, deflate or identity)")]
    Unsupported(String),
    #[error("body is larger than {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("cannot decompress {encoding} body: {message}")]
    Corrupt {
        encoding: &'static str,
        message: String,
    },
}

impl Encoding {
    pub fn from_header(value: Option<&str>) -> Result<Self, DecompressError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Self::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Self::Gzip),
            Some("zstd") => Ok(Self::Zstd),
            Some("deflate") => Ok(Self::Deflate),
            Some(other) => Err(DecompressError::Unsupported(other.to_string())),
        }
    }

    pub const ALL: [Encoding; 4] = [Self::Identity, Self::Gzip, Self::Zstd, Self::Deflate];

    pub fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::Deflate => "deflate",
        }
    }
}

/// Decompresses `body`, refusing output beyond `limit` bytes.
pub fn decompress(
    encoding: Encoding,
    body: bytes::Bytes,
    limit: usize,
) -> Result<bytes::Bytes, DecompressError> {
    let corrupt = |e: std::io::Error| DecompressError::Corrupt {
        encoding: encoding.name(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let read = match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(DecompressError::TooLarge { limit });
            }
            return Ok(body);
        }
        Encoding::Gzip => flate2::read::MultiGzDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        Encoding::Deflate => flate2::read::ZlibDecoder::new(&body[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        Encoding::Zstd => zstd::stream::read::Decoder::new(&body[..])
            .map_err(corrupt)?
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
    };
    read.map_err(corrupt)?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out.into())
}

/// Compresses a request body for sending (gzip at its fast level, zstd at level 3: both trade a
/// little size for much less CPU, as the Collector's defaults do).
pub fn compress(encoding: Encoding, body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    match encoding {
        Encoding::Identity => Ok(body.to_vec()),
        Encoding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body)?;
            e.finish()
        }
        Encoding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(body)?;
            e.finish()
        }
        Encoding::Zstd => zstd::encode_all(body, 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn what_is_compressed_decompresses() {
        let data = b"otlp body ".repeat(500);
        for e in Encoding::ALL {
            let packed = compress(e, &data).unwrap();
            let out = decompress(e, packed.into(), 100_000).unwrap();
            assert_eq!(&out[..], &data[..], "{}", e.name());
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data = b"hello otlp".repeat(100);
        let out = decompress(Encoding::Gzip, gzip(&data).into(), 10_000).unwrap();
        assert_eq!(&out[..], &data[..]);
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let out = decompress(Encoding::Zstd, z.into(), 10_000).unwrap();
        assert_eq!(&out[..], &data[..]);
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        let data = vec![0u8; 1 << 20];
        let err = decompress(Encoding::Gzip, gzip(&data).into(), 1000).unwrap_err();
        assert_eq!(err, DecompressError::TooLarge { limit: 1000 });
    }

    #[test]
    fn garbage_and_unknown_encodings_are_errors() {
        assert!(matches!(
            decompress(Encoding::Gzip, bytes::Bytes::from_static(b"nope"), 100),
            Err(DecompressError::Corrupt { .. })
        ));
        assert!(matches!(
            Encoding::from_header(Some("br")),
            Err(DecompressError::Unsupported(_))
        ));
    }
}
