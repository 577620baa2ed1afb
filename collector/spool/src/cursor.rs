//! Per-exporter cursors, one small checksummed file each, overwritten in place.
//!
//! `committed` is the first sequence number not yet delivered; `dispatched` is how far the
//! exporter had read when the cursor was last written, so after a crash the records between
//! the two are known to be possible duplicates. A missing or damaged file means "start from the
//! oldest record": duplicates, never loss.
//!
//! A cursor is written after every delivered batch, hundreds of times a second under load.
//! One 20-byte write at offset 0 cannot tear when the process dies (the page cache holds it
//! whole), and a write torn by a power cut fails the checksum, which the rule above covers.
//! Writing a temporary file and renaming it over the cursor cost a journalled directory
//! update each time: 3–4 % of the collector's CPU in profiles at 500k log records/s
//! (`benches/RESULTS.md`, session 8).

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct CursorState {
    pub committed: u64,
    pub dispatched: u64,
}

/// Exporter names come from config keys; keep file names to a safe alphabet.
pub fn cursor_path(dir: &Path, name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '~'
            }
        })
        .collect();
    dir.join(format!("{safe}.cursor"))
}

pub enum Loaded {
    Found(CursorState),
    Missing,
    Damaged(String),
}

pub fn load(dir: &Path, name: &str) -> Loaded {
    let path = cursor_path(dir, name);
    match fs::read(&path) {
        Ok(bytes) => decode(&bytes).map(Loaded::Found).unwrap_or_else(|| {
            Loaded::Damaged(format!(
                "{}: {} bytes, bad length or checksum",
                path.display(),
                bytes.len()
            ))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Loaded::Missing,
        Err(e) => Loaded::Damaged(format!("{}: {e}", path.display())),
    }
}

fn decode(bytes: &[u8]) -> Option<CursorState> {
    if bytes.len() != 20 {
        return None;
    }
    let crc = u32::from_le_bytes(bytes[16..20].try_into().ok()?);
    if crc32c::crc32c(&bytes[..16]) != crc {
        return None;
    }
    Some(CursorState {
        committed: u64::from_le_bytes(bytes[0..8].try_into().ok()?),
        dispatched: u64::from_le_bytes(bytes[8..16].try_into().ok()?),
    })
}

pub fn store(dir: &Path, name: &str, state: CursorState) -> io::Result<()> {
    let mut bytes = [0u8; 20];
    bytes[0..8].copy_from_slice(&state.committed.to_le_bytes());
    bytes[8..16].copy_from_slice(&state.dispatched.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(cursor_path(dir, name))?;
    file.write_all_at(&bytes, 0)?;
    // Anything longer (a damaged file) would fail the length check for ever.
    if file.metadata()?.len() != bytes.len() as u64 {
        file.set_len(bytes.len() as u64)?;
    }
    Ok(())
}

pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(cursor_path(dir, name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Names of all exporters with a cursor file in `dir`.
pub fn list(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".cursor"))
                .map(str::to_owned)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path(), "tempo"), Loaded::Missing));
        let s = CursorState {
            committed: 7,
            dispatched: 9,
        };
        store(dir.path(), "tempo", s).unwrap();
        assert!(matches!(load(dir.path(), "tempo"), Loaded::Found(x) if x == s));
        fs::write(cursor_path(dir.path(), "tempo"), b"garbage").unwrap();
        assert!(matches!(load(dir.path(), "tempo"), Loaded::Damaged(_)));
        assert_eq!(list(dir.path()), vec!["tempo".to_string()]);
        // Overwriting a damaged file longer than a cursor leaves a valid one.
        fs::write(cursor_path(dir.path(), "tempo"), [7u8; 64]).unwrap();
        store(dir.path(), "tempo", s).unwrap();
        assert!(matches!(load(dir.path(), "tempo"), Loaded::Found(x) if x == s));
        let later = CursorState {
            committed: 8,
            dispatched: 9,
        };
        store(dir.path(), "tempo", later).unwrap();
        assert!(matches!(load(dir.path(), "tempo"), Loaded::Found(x) if x == later));
        assert_eq!(list(dir.path()), vec!["tempo".to_string()]);
    }
}
