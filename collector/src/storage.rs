//! The storage directory (`--storage.path`) and its lock: two processes on one spool would
//! corrupt it, so the second one refuses to start.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

/// Holds the lock until dropped.
pub struct StorageLock {
    _file: File,
}

pub fn lock(path: &Path) -> anyhow::Result<StorageLock> {
    fs::create_dir_all(path)
        .map_err(|e| anyhow::anyhow!("cannot create storage path {}: {e}", path.display()))?;
    let lock_path = path.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(StorageLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "storage path {} is in use by another sluice process (set a different --storage.path)",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", lock_path.display())
        }
    }
}
