//! The positions file: for every file being read, the offset up to which its entries are
//! durable in the spool, and the end of the entries handed to the spool but not yet confirmed.
//! Written whole to a temporary file, `fsync`ed, renamed over the old one and the directory
//! `fsync`ed, so a crash leaves either the old or the new version, never a torn one.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "positions.json";
const VERSION: u32 = 1;

/// A file's identity: device and inode, which a rename keeps and a new file does not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// CRC32C of a file's first bytes, to tell a file from a new one that got the same inode, and
/// a file from its truncated-and-rewritten self.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Head {
    pub len: u32,
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    #[serde(flatten)]
    pub id: FileId,
    /// Where the file was last seen (informational; the identity is `id`).
    pub path: String,
    /// Every entry ending at or before this offset is durable in the spool.
    pub offset: u64,
    /// Entries up to here were handed to the spool and may be durable: after a crash they are
    /// read again and counted as possible duplicates.
    pub pending_end: u64,
    pub head: Head,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    files: Vec<Position>,
}

pub struct PositionsFile {
    dir: PathBuf,
    path: PathBuf,
}

/// Why the positions file cannot be used; each names the file or directory.
#[derive(Debug, thiserror::Error)]
pub enum PositionsError {
    #[error("cannot create {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a positions file ({source}); move it away to start over", path.display())]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} has version {found}, this Sluice reads version {}", path.display(), VERSION)]
    Version { path: PathBuf, found: u32 },
}

impl PositionsFile {
    /// Opens (creating the directory) and reads the recorded positions. A file that cannot be
    /// read or parsed is an error: starting over would read files twice or skip them.
    pub fn open(dir: &Path) -> Result<(PositionsFile, Vec<Position>), PositionsError> {
        std::fs::create_dir_all(dir).map_err(|source| PositionsError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let positions = match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored =
                    serde_json::from_slice(&bytes).map_err(|source| PositionsError::Malformed {
                        path: path.clone(),
                        source,
                    })?;
                if stored.version != VERSION {
                    return Err(PositionsError::Version {
                        path,
                        found: stored.version,
                    });
                }
                stored.files
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(PositionsError::Read { path, source }),
        };
        let _ = std::fs::remove_file(dir.join(format!("{FILE_NAME}.tmp")));
        Ok((
            PositionsFile {
                dir: dir.to_owned(),
                path,
            },
            positions,
        ))
    }

    /// Replaces the recorded positions, durably.
    pub fn save(&self, files: &[Position]) -> std::io::Result<()> {
        let stored = Stored {
            version: VERSION,
            files: files.to_vec(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_positions_are_read_back_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (file, none) = PositionsFile::open(dir.path()).unwrap();
        assert!(none.is_empty());
        let p = Position {
            id: FileId { dev: 1, ino: 2 },
            path: "/var/log/a.log".into(),
            offset: 10,
            pending_end: 20,
            head: Head { len: 10, crc: 7 },
        };
        file.save(std::slice::from_ref(&p)).unwrap();
        let (_, back) = PositionsFile::open(dir.path()).unwrap();
        assert_eq!(back, vec![p]);
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let err = PositionsFile::open(dir.path()).err().unwrap();
        assert!(matches!(err, PositionsError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("is not a positions file"), "{err}");
    }
}
