//! Snappy block compression (the format of Loki and remote-write bodies and of compressed
//! spool records) through a buffer kept per thread.
//!
//! `snap`'s own `compress_vec` allocates and zero-fills the worst-case output size for every
//! call: for a 1 MB push body that is a fresh megabyte, its page faults and a memset, several
//! times larger than the compressed result. Here the worst-case buffer is allocated once per
//! thread and only the compressed bytes are copied out. The encoder is kept too: a new one
//! allocates its 32 KiB hash table again for every input longer than a few kilobytes.
//!
//! A buffer that grew past [`RETAINED_BYTES`] for a rare large body is freed after that call,
//! so a thread keeps at most a few megabytes between calls.

use std::cell::RefCell;

struct Compressor {
    encoder: snap::raw::Encoder,
    output: Vec<u8>,
}

/// The largest buffer a thread keeps between calls: above any usual push or spool body (a
/// 2000-line Loki push is under 1 MB), far below the 16 MiB a single request may reach.
pub const RETAINED_BYTES: usize = 4 << 20;

/// Frees `buf` if a large body made it grow past [`RETAINED_BYTES`].
fn trim(buf: &mut Vec<u8>) {
    if buf.capacity() > RETAINED_BYTES {
        *buf = Vec::new();
    }
}

thread_local! {
    static COMPRESSOR: RefCell<Compressor> = RefCell::new(Compressor {
        encoder: snap::raw::Encoder::new(),
        output: Vec::new(),
    });
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Calls `f` with the snappy block compression of `raw`, which is only valid during the call.
pub fn with_compressed<T>(raw: &[u8], f: impl FnOnce(Result<&[u8], snap::Error>) -> T) -> T {
    COMPRESSOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut compressor) => {
            let Compressor { encoder, output } = &mut *compressor;
            let need = snap::raw::max_compress_len(raw.len());
            if output.len() < need {
                output.resize(need, 0);
            }
            let result = match encoder.compress(raw, output) {
                Ok(n) => f(Ok(output.get(..n).unwrap_or_default())),
                Err(e) => f(Err(e)),
            };
            trim(output);
            result
        }
        // Only reachable if `f` compresses again on this thread: that call pays for its own
        // buffer.
        Err(_) => match snap::raw::Encoder::new().compress_vec(raw) {
            Ok(compressed) => f(Ok(&compressed)),
            Err(e) => f(Err(e)),
        },
    })
}

/// The snappy block compression of `raw`, in a vector of exactly its length.
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, snap::Error> {
    with_compressed(raw, |compressed| compressed.map(<[u8]>::to_vec))
}

/// The snappy block compression of what `build` appends to an empty buffer. The uncompressed
/// body is built in a buffer kept per thread as well, so a body of a megabyte costs no fresh
/// megabyte per request.
pub fn compress_built(build: impl FnOnce(&mut Vec<u8>)) -> Result<Vec<u8>, snap::Error> {
    INPUT.with(|cell| match cell.try_borrow_mut() {
        Ok(mut input) => {
            input.clear();
            build(&mut input);
            let result = compress(&input);
            trim(&mut input);
            result
        }
        // Only reachable if `build` compresses a built body itself.
        Err(_) => {
            let mut input = Vec::new();
            build(&mut input);
            compress(&input)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decompress(compressed: &[u8]) -> Vec<u8> {
        snap::raw::Decoder::new()
            .decompress_vec(compressed)
            .expect("valid snappy")
    }

    #[test]
    fn round_trips_inputs_of_growing_and_shrinking_size() {
        // The buffer grows for the large input and is reused, longer than needed, for the
        // small ones after it: only the compressed bytes of each call may come out.
        for len in [0, 1, 300, 1 << 20, 17, 4096, 0] {
            let raw: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ (i / 7) as u8).collect();
            let compressed = compress(&raw).expect("compresses");
            assert_eq!(decompress(&compressed), raw, "length {len}");
            assert_eq!(
                compressed,
                snap::raw::Encoder::new()
                    .compress_vec(&raw)
                    .expect("compresses"),
                "same bytes as snap's own allocation, length {len}"
            );
        }
    }

    #[test]
    fn a_buffer_grown_past_the_retained_size_is_freed_after_the_call() {
        let large: Vec<u8> = (0..RETAINED_BYTES + 1000).map(|i| (i % 7) as u8).collect();
        let compressed = compress_built(|b| b.extend_from_slice(&large)).expect("compresses");
        assert_eq!(decompress(&compressed), large);
        let kept = |cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>| {
            cell.with(|b| b.borrow().capacity())
        };
        assert_eq!(kept(&INPUT), 0, "the input buffer was freed");
        assert_eq!(COMPRESSOR.with(|c| c.borrow().output.capacity()), 0);
        // A usual body afterwards keeps its buffers for the next call.
        let small = vec![1u8; 10_000];
        compress_built(|b| b.extend_from_slice(&small)).expect("compresses");
        assert!(kept(&INPUT) >= small.len());
        assert!(COMPRESSOR.with(|c| c.borrow().output.capacity()) >= small.len());
    }

    #[test]
    fn compress_built_compresses_what_was_built_each_time() {
        for len in [5000, 10, 0, 70_000] {
            let raw: Vec<u8> = (0..len).map(|i| (i % 13) as u8).collect();
            let compressed = compress_built(|buf| {
                assert!(buf.is_empty(), "starts empty");
                buf.extend_from_slice(&raw);
            })
            .expect("compresses");
            assert_eq!(decompress(&compressed), raw, "length {len}");
        }
        let nested = compress_built(|outer| {
            let inner = compress_built(|b| b.extend_from_slice(b"inner")).expect("compresses");
            outer.extend_from_slice(&inner);
        })
        .expect("compresses");
        let inner = decompress(&decompress(&nested));
        assert_eq!(inner, b"inner");
    }

    #[test]
    fn compressing_again_inside_the_callback_works() {
        let outer = b"outer outer outer outer outer outer".repeat(20);
        let inner = b"inner inner inner".repeat(30);
        let (a, b) = with_compressed(&outer, |first| {
            let first = first.expect("compresses").to_vec();
            (first, compress(&inner).expect("compresses"))
        });
        assert_eq!(decompress(&a), outer);
        assert_eq!(decompress(&b), inner);
    }
}
