//! Files to Loki, end to end, through crashes: a writer appends numbered lines to a log file
//! and rotates it both ways (rename, and copytruncate), the real `sluice` binary tails it with
//! a `file_log` receiver and sends it through the spool to the Loki test backend, and is
//! killed with SIGKILL mid-stream and restarted, twice. Every line must arrive; a line may
//! arrive twice only within the bound the receiver documents, and each such possible
//! duplicate is counted in `sluice_file_log_reread_entries_total`.

mod support;

use sluice_testkit::loki::LokiTestServer;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{Sluice, write_config};

const MAX_BATCH: usize = 50;

/// Appends numbered lines to `app.log` and rotates it as logrotate would.
struct Writer {
    dir: PathBuf,
    file: std::fs::File,
    next: usize,
    rotations: usize,
}

impl Writer {
    fn new(dir: &Path) -> Writer {
        Writer {
            dir: dir.to_owned(),
            file: Self::open(dir),
            next: 0,
            rotations: 0,
        }
    }

    fn open(dir: &Path) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("app.log"))
            .expect("open app.log")
    }

    /// `n` lines, pausing a little every 10 lines so reading and writing interleave.
    fn write(&mut self, n: usize) {
        for _ in 0..n {
            writeln!(self.file, "line-{:06}", self.next).expect("write");
            self.next += 1;
            if self.next.is_multiple_of(10) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    /// logrotate's default: rename, then the application reopens. A few lines still go to the
    /// old file after the rename, as from an application that has not reopened yet.
    fn rotate_by_rename(&mut self) {
        self.rotations += 1;
        let rotated = self.dir.join(format!("app.log.{}", self.rotations));
        std::fs::rename(self.dir.join("app.log"), rotated).expect("rename");
        self.write(5);
        self.file = Self::open(&self.dir);
    }

    /// logrotate's `copytruncate`: copy, then truncate the file the application keeps open.
    fn rotate_by_copytruncate(&mut self) {
        self.rotations += 1;
        let copy = self.dir.join(format!("app.log.{}", self.rotations));
        std::fs::copy(self.dir.join("app.log"), copy).expect("copy");
        self.file.set_len(0).expect("truncate");
    }
}

/// How many times each line arrived.
fn arrivals(loki: &LokiTestServer) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for entry in loki.entries_for(&[("service_name", "file-e2e")]) {
        *seen.entry(entry.line).or_insert(0) += 1;
    }
    seen
}

async fn wait_for_lines(loki: &LokiTestServer, n: usize, sluice: &Sluice) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while arrivals(loki).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} lines arrived; log:\n{}",
            arrivals(loki).len(),
            sluice.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_files_arrive_once_through_kill_9_and_restart() {
    let loki = LokiTestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let storage = dir.path().join("data");
    let config = format!(
        r#"
[receivers.files]
type = "file_log"
include = ["{}/*.log"]
start_at = "beginning"
poll_interval = "10ms"
scan_interval = "50ms"
max_batch_entries = {MAX_BATCH}
resource = {{ "service.name" = "file-e2e" }}

[processors.batch]
type = "batch"
timeout = "20ms"

[exporters.loki]
type = "loki"
url = "{}"
line_format = "raw"
tenant_id = "files"

[[pipelines]]
name = "files"
signals = ["logs"]
receivers = ["files"]
processors = ["batch"]
exporters = ["loki"]
"#,
        logs.display(),
        loki.push_url()
    );
    let path = write_config(dir.path(), "file_log.toml", &config);
    let mut sluice = Sluice::start(&path, &storage).await;
    let mut rereads = 0.0;

    // Rotation by rename while Sluice reads.
    let mut writer = Writer::new(&logs);
    writer.write(300);
    writer.rotate_by_rename();
    writer.write(200);
    wait_for_lines(&loki, writer.next, &sluice).await;
    assert!(
        sluice
            .metric(
                "sluice_file_log_files_total{component_id=\"receivers.files\",event=\"rotated\"}"
            )
            .await
            >= 1.0
    );

    // SIGKILL while the writer is writing; the file is rotated while Sluice is down.
    let before = writer.next;
    let background = tokio::task::spawn_blocking(move || {
        writer.write(600);
        writer.rotate_by_rename();
        writer.write(200);
        writer
    });
    wait_for_lines(&loki, before + 100, &sluice).await;
    rereads += sluice.metric("sluice_file_log_reread_entries_total").await;
    eprintln!("rereads so far: {rereads}");
    sluice.kill9();
    let mut writer = background.await.unwrap();
    let mut sluice = Sluice::start(&path, &storage).await;
    wait_for_lines(&loki, writer.next, &sluice).await;

    // copytruncate, once everything so far arrived (what is written between the last read and
    // the truncation is only in the copy, which no glob matches: lost by design, as in any
    // tailer), then a second SIGKILL while the truncated file is read again.
    writer.rotate_by_copytruncate();
    let before = writer.next;
    let background = tokio::task::spawn_blocking(move || {
        writer.write(600);
        writer
    });
    wait_for_lines(&loki, before + 100, &sluice).await;
    assert!(
        sluice
            .metric(
                "sluice_file_log_files_total{component_id=\"receivers.files\",event=\"truncated\"}"
            )
            .await
            >= 1.0,
        "{}",
        sluice.log_text()
    );
    rereads += sluice.metric("sluice_file_log_reread_entries_total").await;
    eprintln!("rereads so far: {rereads}");
    sluice.kill9();
    let writer = background.await.unwrap();
    let sluice = Sluice::start(&path, &storage).await;
    wait_for_lines(&loki, writer.next, &sluice).await;
    // Anything in flight is delivered by now; give a late duplicate the chance to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rereads += sluice.metric("sluice_file_log_reread_entries_total").await;

    let seen = arrivals(&loki);
    let expected: Vec<String> = (0..writer.next).map(|i| format!("line-{i:06}")).collect();
    let missing: Vec<&String> = expected.iter().filter(|l| !seen.contains_key(*l)).collect();
    assert!(missing.is_empty(), "lines lost: {missing:?}");
    assert_eq!(
        seen.len(),
        expected.len(),
        "lines that were never written arrived"
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!("{duplicates} duplicates, {rereads} entries counted as possibly read twice");
    assert!(
        duplicates as f64 <= rereads,
        "{duplicates} duplicates but only {rereads} entries counted as possibly read twice"
    );
    // The documented bound: at most the batch in flight at each of the two kills.
    assert!(rereads <= (2 * MAX_BATCH) as f64, "{rereads} rereads");
}
