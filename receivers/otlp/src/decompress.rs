//! Request-body decompression with a hard cap on the output, so a small compressed body cannot
//! make the process allocate more than the cap (a gzip bomb gets a 413, not an OOM).

use bytes::Bytes;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use std::io::Read;

/// `Content-Encoding` values the HTTP receiver understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    /// `deflate` (zlib-wrapped, as HTTP defines it and the collector reads it) and `zlib`.
    Zlib,
}

impl ContentEncoding {
    /// Parses the header; `None` for encodings we cannot decode.
    pub fn parse(header: Option<&str>) -> Option<ContentEncoding> {
        let Some(value) = header else {
            return Some(ContentEncoding::Identity);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(ContentEncoding::Identity),
            "gzip" | "x-gzip" => Some(ContentEncoding::Gzip),
            "deflate" | "zlib" => Some(ContentEncoding::Zlib),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum DecompressError {
    /// The output would exceed the cap.
    TooLarge { cap: usize },
    /// The compressed stream is corrupt.
    Corrupt(std::io::Error),
}

/// Decompresses `body`, failing as soon as the output would pass `cap` bytes. Memory held never
/// exceeds `cap + 1` bytes of output.
pub fn decompress(
    encoding: ContentEncoding,
    body: Bytes,
    cap: usize,
) -> Result<Bytes, DecompressError> {
    let out = match encoding {
        ContentEncoding::Identity => {
            if body.len() > cap {
                return Err(DecompressError::TooLarge { cap });
            }
            return Ok(body);
        }
        ContentEncoding::Gzip => read_capped(MultiGzDecoder::new(&body[..]), body.len(), cap)?,
        ContentEncoding::Zlib => read_capped(ZlibDecoder::new(&body[..]), body.len(), cap)?,
    };
    Ok(Bytes::from(out))
}

fn read_capped(
    mut reader: impl Read,
    compressed_len: usize,
    cap: usize,
) -> Result<Vec<u8>, DecompressError> {
    // One byte over the cap is enough to know the body is too large.
    let limit = cap.saturating_add(1);
    // (`max` then `min`, not `clamp`: the cap may be below the floor.)
    let initial = compressed_len.saturating_mul(4).max(4096).min(limit);
    let mut out: Vec<u8> = Vec::with_capacity(initial);
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= limit {
                return Err(DecompressError::TooLarge { cap });
            }
            // Grow by doubling, never past the limit.
            let grow_to = out.len().saturating_mul(2).max(64 * 1024).min(limit);
            out.reserve_exact(grow_to - out.len());
            out.resize(grow_to, 0);
        }
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(DecompressError::Corrupt(e)),
        }
    }
    if filled > cap {
        return Err(DecompressError::TooLarge { cap });
    }
    out.truncate(filled);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn round_trips_and_respects_the_cap() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let gz = gzip(&data);
        assert_eq!(
            decompress(ContentEncoding::Gzip, gz.clone().into(), data.len()).unwrap(),
            data
        );
        assert!(matches!(
            decompress(ContentEncoding::Gzip, gz.into(), data.len() - 1),
            Err(DecompressError::TooLarge { .. })
        ));
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        assert_eq!(
            decompress(ContentEncoding::Zlib, zlib.into(), usize::MAX).unwrap(),
            data
        );
        assert!(matches!(
            decompress(ContentEncoding::Identity, data.into(), 10),
            Err(DecompressError::TooLarge { cap: 10 })
        ));
    }

    #[test]
    fn concatenated_gzip_members_are_read() {
        let mut both = gzip(b"hello ");
        both.extend(gzip(b"world"));
        assert_eq!(
            decompress(ContentEncoding::Gzip, both.into(), 100).unwrap(),
            &b"hello world"[..]
        );
    }

    #[test]
    fn corrupt_streams_are_errors() {
        let mut gz = gzip(b"some data to compress");
        let mid = gz.len() / 2;
        gz[mid] ^= 0xff;
        assert!(decompress(ContentEncoding::Gzip, gz.into(), 1000).is_err());
        assert!(matches!(
            decompress(
                ContentEncoding::Gzip,
                Bytes::from_static(b"not gzip at all"),
                1000
            ),
            Err(DecompressError::Corrupt(_))
        ));
        let truncated = Bytes::copy_from_slice(&gzip(b"abcdef")[..10]);
        assert!(decompress(ContentEncoding::Gzip, truncated, 1000).is_err());
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 50 * 1024 * 1024];
        let bomb = gzip(&zeros);
        assert!(bomb.len() < 1024 * 1024);
        let cap = 1024 * 1024;
        assert!(matches!(
            decompress(ContentEncoding::Gzip, bomb.into(), cap),
            Err(DecompressError::TooLarge { .. })
        ));
    }

    #[test]
    fn tiny_caps_work() {
        let gz = gzip(b"0123456789");
        assert_eq!(
            decompress(ContentEncoding::Gzip, gz.clone().into(), 10).unwrap(),
            &b"0123456789"[..]
        );
        assert!(matches!(
            decompress(ContentEncoding::Gzip, gz.clone().into(), 9),
            Err(DecompressError::TooLarge { cap: 9 })
        ));
        assert!(matches!(
            decompress(ContentEncoding::Gzip, gz.into(), 0),
            Err(DecompressError::TooLarge { cap: 0 })
        ));
    }

    #[test]
    fn encodings_parse() {
        assert_eq!(
            ContentEncoding::parse(None),
            Some(ContentEncoding::Identity)
        );
        assert_eq!(
            ContentEncoding::parse(Some("GZIP")),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(
            ContentEncoding::parse(Some("deflate")),
            Some(ContentEncoding::Zlib)
        );
        assert_eq!(ContentEncoding::parse(Some("br")), None);
        assert_eq!(ContentEncoding::parse(Some("zstd")), None);
    }
}
