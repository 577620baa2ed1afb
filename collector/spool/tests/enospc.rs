//! A real full disk: the spool lives on a 1 MiB tmpfs. When the disk fills, appends are
//! refused with retryable backpressure (never acknowledged and lost), everything acknowledged
//! before stays readable, and intake resumes once delivered segments free the space.
//! Needs root (to mount the tmpfs), as CI has; set SLUICE_SKIP_ROOT_TESTS=1 to skip elsewhere.

use bytes::Bytes;
use sluice_core::{ByteSize, Item, Refusal, Signal};
use sluice_spool::{Fsync, Spool, SpoolCompression, SpoolConfig};
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn disk_full_refuses_retryably_and_recovers() {
    if std::env::var_os("SLUICE_SKIP_ROOT_TESTS").is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        mounted,
        "mounting a tmpfs needs root; run as root (CI does) or set SLUICE_SKIP_ROOT_TESTS=1"
    );
    let _guard = Tmpfs(dir.path().to_owned());

    let config = SpoolConfig {
        fsync: Fsync::Always,
        max_bytes: ByteSize::gib(1), // only the disk can run out
        segment_bytes: ByteSize::kib(64),
        compression: SpoolCompression::None,
        ..Default::default()
    };
    let (spool, _) = Spool::open("p", dir.path(), config, &["a".to_string()]).unwrap();
    let payload = Bytes::from(vec![7u8; 16 * 1024]);
    let mut acked = 0u32;
    let refusal = loop {
        match spool.append(Item::new(Signal::Logs, payload.clone(), 1)) {
            Ok(ticket) => match ticket.await {
                Ok(()) => acked += 1,
                Err(r) => break r,
            },
            Err(r) => break r,
        }
        assert!(acked < 1000, "a 1 MiB disk must fill up");
    };
    assert!(
        matches!(
            refusal,
            Refusal::Backpressure {
                reason: "disk_full",
                ..
            }
        ),
        "{refusal:?}"
    );
    assert!(acked > 10, "{acked}");
    // Still refused while the disk is full, with a retry delay.
    assert!(matches!(
        spool.append(Item::new(Signal::Logs, payload.clone(), 1)),
        Err(Refusal::Backpressure { .. })
    ));

    // Everything acknowledged is there; delivering it frees the segments.
    let mut reader = spool.reader("a").unwrap();
    let mut read = 0;
    loop {
        let batch = reader.read(100, 1 << 30);
        if batch.is_empty() {
            break;
        }
        read += batch.len() as u32;
    }
    assert_eq!(read, acked, "every acknowledged item is readable");
    reader.commit(reader.position());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(ticket) = spool.append(Item::new(Signal::Logs, payload.clone(), 1))
            && ticket.await.is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "intake did not resume after space came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    spool.close();
}
