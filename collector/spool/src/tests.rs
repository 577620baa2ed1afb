use super::*;
use bytes::Bytes;
use sluice_core::{DurationStr, Signal};

fn item(n: u32) -> Item {
    Item::new(
        Signal::Traces,
        Bytes::from(format!("payload-{n:08}").into_bytes()),
        n,
    )
}

fn cfg(fsync: Fsync) -> SpoolConfig {
    SpoolConfig {
        fsync,
        segment_bytes: ByteSize(4096),
        ..Default::default()
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

async fn append_all(spool: &Spool, range: std::ops::Range<u32>) {
    for n in range {
        spool
            .append(item(n))
            .expect("accepted")
            .await
            .expect("durable");
    }
}

/// Segment deletion happens on the writer thread shortly after a commit.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn read_all(reader: &mut SpoolReader) -> Vec<u32> {
    let mut got = Vec::new();
    loop {
        let batch = reader.read(7, 1 << 20);
        if batch.is_empty() {
            return got;
        }
        got.extend(batch.iter().map(|r| r.item.count));
    }
}

#[tokio::test]
async fn append_read_commit_and_segments_rotate_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a", "b"])).unwrap();
    append_all(&spool, 0..500).await;
    assert!(spool.segment_count() > 3, "small segments must rotate");
    let mut a = spool.reader("a").unwrap();
    let mut b = spool.reader("b").unwrap();
    assert_eq!(read_all(&mut a), (0..500).collect::<Vec<_>>());
    a.commit(a.position());
    let segments = spool.segment_count();
    assert!(
        segments > 3,
        "b has not read anything: nothing may be deleted"
    );
    assert_eq!(read_all(&mut b), (0..500).collect::<Vec<_>>());
    b.commit(b.position());
    eventually("all delivered: only the newest segment is kept", || {
        spool.segment_count() == 1
    })
    .await;
    spool.close();
}

#[tokio::test]
async fn restart_replays_exactly_what_was_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) =
            Spool::open("p", dir.path(), cfg(Fsync::Interval), &names(&["a"])).unwrap();
        append_all(&spool, 0..300).await;
        let mut a = spool.reader("a").unwrap();
        let first = a.read(120, 1 << 20);
        assert_eq!(first.len(), 120);
        a.commit(first.last().unwrap().seq + 1);
        spool.close();
    }
    let (spool, report) =
        Spool::open("p", dir.path(), cfg(Fsync::Interval), &names(&["a"])).unwrap();
    assert_eq!(report.corrupt_records, 0);
    let mut a = spool.reader("a").unwrap();
    assert_eq!(read_all(&mut a), (120..300).collect::<Vec<_>>());
    // New appends continue the sequence after the recovered ones.
    append_all(&spool, 300..310).await;
    assert_eq!(read_all(&mut a), (300..310).collect::<Vec<_>>());
    spool.close();
}

#[tokio::test]
async fn lagging_reader_reads_from_disk_then_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        memory_bytes: ByteSize(200),
        ..cfg(Fsync::None)
    };
    let (spool, _) = Spool::open("p", dir.path(), config, &names(&["a"])).unwrap();
    append_all(&spool, 0..1000).await;
    // fsync = none acks at enqueue: wait until the writer has published everything.
    while spool.published() < 1000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut a = spool.reader("a").unwrap();
    assert_eq!(read_all(&mut a), (0..1000).collect::<Vec<_>>());
    spool.close();
}

#[tokio::test]
async fn full_spool_refuses_with_backpressure_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        max_bytes: ByteSize(8192),
        segment_bytes: ByteSize(4096),
        ..Default::default()
    };
    let (spool, _) = Spool::open("p", dir.path(), config, &names(&["a"])).unwrap();
    let mut accepted = 0u32;
    let refusal = loop {
        match spool.append(item(accepted)) {
            Ok(t) => {
                t.await.unwrap();
                accepted += 1;
            }
            Err(r) => break r,
        }
    };
    assert!(
        matches!(
            refusal,
            Refusal::Backpressure {
                reason: "spool_full",
                ..
            }
        ),
        "{refusal:?}"
    );
    let mut a = spool.reader("a").unwrap();
    let got = read_all(&mut a);
    assert_eq!(
        got,
        (0..accepted).collect::<Vec<_>>(),
        "everything acknowledged is readable"
    );
    a.commit(a.position());
    eventually("space is back once the exporter caught up", || {
        spool.used_bytes() < 4096
    })
    .await;
    spool
        .append(item(accepted))
        .expect("room again")
        .await
        .unwrap();
    spool.close();
}

#[tokio::test]
async fn torn_tail_is_truncated_and_corrupt_middle_record_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: ByteSize::mib(1),
        ..cfg(Fsync::Always)
    };
    {
        let (spool, _) = Spool::open("p", dir.path(), config.clone(), &names(&["a"])).unwrap();
        append_all(&spool, 0..10).await;
        spool.close();
    }
    let (_, seg) = segment::list(dir.path()).unwrap().pop().unwrap();
    let mut data = fs::read(&seg).unwrap();
    let rec_len = data.len() / 10;
    // Flip a payload byte of record 3 and append half a record (a torn write).
    data[3 * rec_len + rec_len - 1] ^= 0x01;
    let torn = data[..rec_len / 2].to_vec();
    data.extend_from_slice(&torn);
    fs::write(&seg, &data).unwrap();

    let (spool, report) = Spool::open("p", dir.path(), config, &names(&["a"])).unwrap();
    assert_eq!(report.corrupt_records, 1);
    assert_eq!(report.truncated_bytes, (rec_len / 2) as u64);
    let mut a = spool.reader("a").unwrap();
    let expect: Vec<u32> = (0..10).filter(|n| *n != 3).collect();
    assert_eq!(read_all(&mut a), expect);
    append_all(&spool, 10..12).await;
    assert_eq!(
        read_all(&mut a),
        vec![10, 11],
        "appends after a truncated tail are readable"
    );
    spool.close();
}

#[tokio::test]
async fn damaged_or_missing_cursor_replays_from_oldest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) =
            Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a", "b"])).unwrap();
        append_all(&spool, 0..50).await;
        let mut a = spool.reader("a").unwrap();
        let mut b = spool.reader("b").unwrap();
        read_all(&mut a);
        a.commit(a.position());
        b.read(10, 1 << 20);
        b.commit(10);
        spool.close();
    }
    fs::write(
        cursor::cursor_path(&dir.path().join("cursors"), "a"),
        b"\x01\x02",
    )
    .unwrap();
    fs::remove_file(cursor::cursor_path(&dir.path().join("cursors"), "b")).unwrap();
    let (spool, report) =
        Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a", "b"])).unwrap();
    assert_eq!(report.cursors_recovered, vec!["a".to_string()]);
    let oldest = segment::list(dir.path()).unwrap()[0].0 as u32;
    for name in ["a", "b"] {
        let mut r = spool.reader(name).unwrap();
        let got = read_all(&mut r);
        assert_eq!(
            got,
            (oldest..50).collect::<Vec<_>>(),
            "{name} replays from the oldest segment"
        );
    }
    spool.close();
}

#[tokio::test]
async fn removed_exporter_stops_holding_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) =
            Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a", "gone"])).unwrap();
        append_all(&spool, 0..200).await;
        let mut a = spool.reader("a").unwrap();
        read_all(&mut a);
        a.commit(a.position());
        assert!(spool.segment_count() > 1);
        spool.close();
    }
    let (spool, _) = Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a"])).unwrap();
    assert_eq!(spool.segment_count(), 1);
    spool.close();
}

#[tokio::test]
async fn concurrent_appends_share_fsyncs_and_all_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: ByteSize::mib(1),
        ..cfg(Fsync::Always)
    };
    let (spool, _) = Spool::open("p", dir.path(), config, &names(&["a"])).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8u32 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            append_all(&spool, t * 100..t * 100 + 100).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut a = spool.reader("a").unwrap();
    let mut got = read_all(&mut a);
    got.sort();
    assert_eq!(got, (0..800).collect::<Vec<_>>());
    spool.close();
}

#[tokio::test]
async fn reader_wait_wakes_on_append_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open("p", dir.path(), cfg(Fsync::Interval), &names(&["a"])).unwrap();
    let mut a = spool.reader("a").unwrap();
    let waiter = tokio::spawn(async move {
        a.wait().await;
        a.read(10, 1 << 20).len()
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    spool.append(item(1)).unwrap().await.unwrap();
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap(),
        1
    );
    let a2 = spool.reader("a").unwrap();
    spool.close();
    assert!(!a2.is_finished() || !a2.has_more());
    assert!(spool.append(item(2)).is_err(), "closed spool refuses");
}

#[tokio::test]
async fn interval_fsyncs_happen_under_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        fsync: Fsync::Interval,
        fsync_interval: DurationStr::from_millis(10),
        segment_bytes: ByteSize::mib(1),
        ..Default::default()
    };
    let (spool, _) = Spool::open("p", dir.path(), config, &names(&["a"])).unwrap();
    let before = interval_fsyncs();
    // The writer never idles during this loop: syncs must still happen. The deadline is far
    // above the 50ms that five 10ms intervals take, so a loaded machine does not fail it.
    let start = std::time::Instant::now();
    let mut n = 0;
    while interval_fsyncs() - before < 5 && start.elapsed() < Duration::from_secs(10) {
        spool.append(item(n)).unwrap().await.unwrap();
        n += 1;
    }
    assert!(
        interval_fsyncs() - before >= 5,
        "only {} fsyncs in {:?} of steady appends",
        interval_fsyncs() - before,
        start.elapsed()
    );
    spool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_acks_concurrent_appends_across_segment_rotation_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        // 4 KiB segments: the groups below rotate segments while earlier groups are syncing.
        let (spool, _) = Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a"])).unwrap();
        let tasks: Vec<_> = (0..8u32)
            .map(|t| {
                let spool = spool.clone();
                tokio::spawn(async move {
                    for n in 0..50 {
                        spool
                            .append(item(t * 1000 + n))
                            .expect("accepted")
                            .await
                            .expect("durable");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(spool.segment_count() > 3);
        spool.close();
    }
    let (spool, report) = Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a"])).unwrap();
    assert_eq!(report.corrupt_records, 0);
    assert_eq!(report.records, 400);
    let mut got = read_all(&mut spool.reader("a").unwrap());
    got.sort_unstable();
    let mut want: Vec<u32> = (0..8u32)
        .flat_map(|t| (0..50).map(move |n| t * 1000 + n))
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[tokio::test]
async fn read_items_caps_batches_in_items_not_records() {
    // From the memory tail, and from disk (no tail kept).
    for memory_bytes in [ByteSize::mib(1), ByteSize(0)] {
        read_items_caps(SpoolConfig {
            memory_bytes,
            ..cfg(Fsync::None)
        })
        .await;
    }
}

async fn read_items_caps(config: SpoolConfig) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open("p", dir.path(), config, &names(&["a"])).unwrap();
    // Items 100, 101, ... 109: each record carries that many items.
    for n in 100..110 {
        spool.append(item(n)).unwrap().await.unwrap();
    }
    eventually("published", || spool.published() == 10).await;
    let mut a = spool.reader("a").unwrap();
    let counts = |rs: &[Record]| rs.iter().map(|r| r.item.count).collect::<Vec<_>>();
    assert_eq!(counts(&a.read_items(250, 1 << 20)), vec![100, 101]);
    // One record larger than the cap still comes, alone.
    assert_eq!(counts(&a.read_items(1, 1 << 20)), vec![102]);
    assert_eq!(
        counts(&a.read_items(1000, 1 << 20)),
        vec![103, 104, 105, 106, 107, 108, 109]
    );
}

#[tokio::test]
async fn a_reopened_spool_knows_what_earlier_runs_left_and_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a"])).unwrap();
    append_all(&spool, 0..300).await;
    let mut a = spool.reader("a").unwrap();
    let first = a.read(100, 1 << 20);
    a.commit(first.last().unwrap().seq + 1);
    spool.close();
    let on_disk: u64 = segment::list(dir.path())
        .unwrap()
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();

    let (spool, _) = Spool::open("p", dir.path(), cfg(Fsync::Always), &names(&["a"])).unwrap();
    assert_eq!(spool.replay_end(), 300);
    let committed = spool.cursor("a").unwrap().committed;
    assert_eq!(committed, 100);
    let everything = spool.stored_between(0, spool.replay_end());
    assert_eq!(everything.bytes, on_disk, "whole segments count exactly");
    let left = spool.stored_between(committed, spool.replay_end());
    // Segments whose records were all delivered are deleted; what is left is at least the
    // 200 undelivered records and at most everything still on disk.
    assert_eq!(left.records, 200);
    assert!(
        left.bytes > 0 && left.bytes <= on_disk,
        "{left:?} of {on_disk}"
    );
    let one = encoded_len(&item(150)) as u64;
    assert!(
        left.bytes >= 150 * one,
        "{left:?}: 200 records of about {one} bytes"
    );
    assert_eq!(spool.stored_between(300, 400), Stored::default());
    spool.close();
}

#[test]
fn byte_counts_read_as_people_write_them() {
    assert_eq!(human_bytes(12), "12 B");
    assert_eq!(human_bytes(1536), "1.5 KiB");
    assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
}

#[test]
fn a_long_segment_check_reports_progress_and_a_short_one_says_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let found: Vec<(u64, PathBuf)> = (0..3u64)
        .map(|i| {
            let path = dir.path().join(format!("{i}.seg"));
            fs::write(&path, vec![0u8; 1024]).unwrap();
            (i, path)
        })
        .collect();
    // Every check is "late": a line after each segment but the last, then the closing line.
    let mut scan = ScanProgress::new(&found, Duration::ZERO);
    let first = scan.checked(1024).expect("a line is due");
    assert!(
        first.starts_with(
            "checking spool segments from an earlier run: 1 of 3 (1.0 KiB of 3.0 KiB), "
        ),
        "{first}"
    );
    assert!(first.contains("s left"), "{first}");
    assert!(
        scan.checked(1024)
            .unwrap()
            .contains(": 2 of 3 (2.0 KiB of 3.0 KiB)")
    );
    assert_eq!(
        scan.checked(1024),
        None,
        "the last segment: the closing line says it"
    );
    let done = scan.finish().expect("closing line");
    assert!(
        done.starts_with("checked spool segments: 3 (3.0 KiB) in "),
        "{done}"
    );
    // A check that ends before the first line is due says nothing.
    let mut quick = ScanProgress::new(&found, Duration::from_secs(3600));
    for _ in 0..3 {
        assert_eq!(quick.checked(1024), None);
    }
    assert_eq!(quick.finish(), None);
}

#[tokio::test]
async fn memory_tail_keeps_only_what_some_reader_has_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        memory_bytes: ByteSize::mib(1),
        ..cfg(Fsync::None)
    };
    let (spool, _) = Spool::open("p", dir.path(), config, &names(&["a", "b"])).unwrap();
    let tail_first = |spool: &Spool| spool.shared.state.lock().tail.first_seq;
    let published = |n: u64| {
        let spool = &spool;
        move || spool.published() == n
    };
    append_all(&spool, 0..10).await;
    eventually("published 10", published(10)).await;
    // No reader yet: everything waits in memory for the readers to come.
    assert_eq!(tail_first(&spool), 0);
    let mut a = spool.reader("a").unwrap();
    let mut b = spool.reader("b").unwrap();
    assert_eq!(read_all(&mut a), (0..10).collect::<Vec<_>>());
    append_all(&spool, 10..20).await;
    eventually("published 20", published(20)).await;
    assert_eq!(tail_first(&spool), 0, "b has read nothing yet");
    assert_eq!(read_all(&mut b), (0..20).collect::<Vec<_>>());
    assert_eq!(read_all(&mut a), (10..20).collect::<Vec<_>>());
    append_all(&spool, 20..30).await;
    eventually("published 30", published(30)).await;
    assert_eq!(tail_first(&spool), 20, "both readers passed 20");
    // A reader that is gone holds nothing back; the other reads the rest from memory.
    drop(b);
    assert_eq!(read_all(&mut a), (20..30).collect::<Vec<_>>());
    append_all(&spool, 30..31).await;
    eventually("published 31", published(31)).await;
    assert_eq!(tail_first(&spool), 30);
    // Reading back from before the tail still works: from disk.
    let mut again = spool.reader("b").unwrap();
    assert_eq!(read_all(&mut again), (0..31).collect::<Vec<_>>());
    spool.close();
}

/// Appends `range` with payloads the test keeps: a record read back from memory shares its
/// payload buffer with what was appended, one read from disk was decompressed into a new one.
async fn append_kept(spool: &Spool, range: std::ops::Range<u32>, kept: &mut Vec<Bytes>) {
    for n in range {
        assert_eq!(kept.len(), n as usize, "kept payloads are indexed by n");
        let payload = Bytes::from(format!("payload-{n:08}").into_bytes());
        kept.push(payload.clone());
        spool
            .append(Item::new(Signal::Traces, payload, n))
            .expect("accepted")
            .await
            .expect("durable");
    }
    eventually("published", || spool.published() == kept.len() as u64).await;
}

/// Reads everything in batches of `batch` records: (every n in order, the n served from memory).
fn read_all_sources(
    reader: &mut SpoolReader,
    batch: usize,
    kept: &[Bytes],
) -> (Vec<u32>, Vec<u32>) {
    let (mut all, mut from_memory) = (Vec::new(), Vec::new());
    loop {
        let (read, memory) = read_sources(reader, batch, kept);
        if read.is_empty() {
            return (all, from_memory);
        }
        all.extend(read);
        from_memory.extend(memory);
    }
}

/// One read of up to `batch` records: (the n read, the n served from memory).
fn read_sources(reader: &mut SpoolReader, batch: usize, kept: &[Bytes]) -> (Vec<u32>, Vec<u32>) {
    let (mut all, mut from_memory) = (Vec::new(), Vec::new());
    for r in reader.read(batch, 1 << 20) {
        let n = r.item.count;
        assert_eq!(
            r.item.payload, kept[n as usize],
            "record {n} reads back intact"
        );
        if r.item.payload.as_ptr() == kept[n as usize].as_ptr() {
            from_memory.push(n);
        }
        all.push(n);
    }
    (all, from_memory)
}

/// The memory windows as `[first, end)`: (the catch-up window, `None` when empty; the tail).
fn windows(spool: &Spool) -> (Option<(u64, u64)>, (u64, u64)) {
    let state = spool.shared.state.lock();
    assert!(
        state.tail.bytes + state.catch_up.bytes <= spool.shared.config.memory_bytes.as_usize(),
        "memory stays within its budget"
    );
    let catch_up = &state.catch_up;
    (
        (!catch_up.records.is_empty()).then(|| (catch_up.first_seq, catch_up.end())),
        (state.tail.first_seq, state.tail.end()),
    )
}

/// Each test payload is 16 bytes: this holds ten records in memory, five of them in the
/// catch-up window.
fn ten_records_in_memory() -> SpoolConfig {
    SpoolConfig {
        memory_bytes: ByteSize(160),
        ..cfg(Fsync::None)
    }
}

/// Reader `a` at the start and 30 records appended after it, ten held in memory.
async fn thirty_records_ahead_of_a_reader() -> (tempfile::TempDir, Spool, SpoolReader, Vec<Bytes>) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open("p", dir.path(), ten_records_in_memory(), &names(&["a"])).unwrap();
    let reader = spool.reader("a").unwrap();
    let mut kept = Vec::new();
    append_kept(&spool, 0..30, &mut kept).await;
    (dir, spool, reader, kept)
}

#[tokio::test]
async fn lagging_reader_reads_the_records_after_its_position_from_memory() {
    let (_dir, spool, mut a, mut kept) = thirty_records_ahead_of_a_reader().await;
    // The oldest records the reader still needs stay, and the newest.
    assert_eq!(windows(&spool), (Some((0, 5)), (25, 30)));
    let (all, from_memory) = read_all_sources(&mut a, 7, &kept);
    assert_eq!(all, (0..30).collect::<Vec<_>>());
    assert_eq!(from_memory, (0..5).chain(25..30).collect::<Vec<_>>());

    // Caught up: the catch-up window emptied, and new records are read from the tail.
    append_kept(&spool, 30..40, &mut kept).await;
    assert_eq!(windows(&spool).0, None);
    let (all, from_memory) = read_all_sources(&mut a, 7, &kept);
    assert_eq!(all, (30..40).collect::<Vec<_>>());
    assert_eq!(from_memory, all);
    spool.close();
}

#[tokio::test]
async fn catch_up_window_starts_again_where_the_tail_lets_go() {
    let (_dir, spool, mut a, mut kept) = thirty_records_ahead_of_a_reader().await;
    // The reader takes the whole window: it is released on the next append.
    let (first, _) = read_sources(&mut a, 5, &kept);
    assert_eq!(first, (0..5).collect::<Vec<_>>());
    // Until the tail alone passes the budget, it holds 25..35 and the window stays empty.
    append_kept(&spool, 30..35, &mut kept).await;
    assert_eq!(windows(&spool), (None, (25, 35)));
    let (first, from_memory) = read_sources(&mut a, 2, &kept);
    assert_eq!((first, from_memory), (vec![5, 6], vec![]), "from disk");
    // One more: the tail hands its oldest to the window, which starts again there and takes
    // half the budget, and drops one.
    append_kept(&spool, 35..36, &mut kept).await;
    assert_eq!(windows(&spool), (Some((25, 30)), (31, 36)));
    let (all, from_memory) = read_all_sources(&mut a, 7, &kept);
    assert_eq!(all, (7..36).collect::<Vec<_>>());
    // Disk only for the stretches between the windows.
    assert_eq!(from_memory, (25..30).chain(31..36).collect::<Vec<_>>());
    spool.close();
}

#[tokio::test]
async fn a_stalled_reader_does_not_push_one_that_keeps_up_onto_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(
        "p",
        dir.path(),
        ten_records_in_memory(),
        &names(&["stalled", "live"]),
    )
    .unwrap();
    let mut stalled = spool.reader("stalled").unwrap();
    let mut live = spool.reader("live").unwrap();
    let mut kept = Vec::new();
    for n in 0..30 {
        append_kept(&spool, n..n + 1, &mut kept).await;
        let (all, from_memory) = read_all_sources(&mut live, 7, &kept);
        assert_eq!(all, vec![n]);
        assert_eq!(
            from_memory,
            vec![n],
            "the live reader reads {n} from memory"
        );
    }
    // The stalled reader holds the window; the live one has the tail's half of the budget.
    assert_eq!(windows(&spool), (Some((0, 5)), (25, 30)));
    let (all, from_memory) = read_all_sources(&mut stalled, 7, &kept);
    assert_eq!(all, (0..30).collect::<Vec<_>>());
    assert_eq!(from_memory, (0..5).chain(25..30).collect::<Vec<_>>());
    spool.close();
}

fn window_record(seq: u64, len: usize) -> Record {
    Record {
        seq,
        appended_ms: 0,
        item: Item::new(Signal::Logs, Bytes::from(vec![b'x'; len]), 1),
    }
}

proptest::proptest! {
    /// Two readers at random speeds over random appends, through the memory windows alone
    /// (a read outside them stands for a disk read): memory stays within its budget, the
    /// windows hold consecutive records the readers still need, and the reads see every
    /// record once, in order.
    #[test]
    fn memory_windows_stay_bounded_and_in_order(
        steps in proptest::collection::vec((1usize..6, 1usize..40, 0usize..8, 0usize..8), 1..120),
        cap in 0usize..400,
    ) {
        let mut tail = Window::starting_at(0);
        let mut catch_up = Window::starting_at(0);
        let mut next = 0u64;
        let mut positions = [0u64; 2];
        for (appends, len, read_a, read_b) in steps {
            for _ in 0..appends {
                tail.push_back(window_record(next, len));
                next += 1;
            }
            let passed = positions.iter().copied().min();
            keep_in_memory(&mut tail, &mut catch_up, cap, passed);
            proptest::prop_assert!(tail.bytes + catch_up.bytes <= cap);
            proptest::prop_assert!(catch_up.bytes <= cap / 2);
            proptest::prop_assert_eq!(tail.end(), next);
            if !catch_up.records.is_empty() {
                proptest::prop_assert!(catch_up.end() <= tail.first_seq);
                proptest::prop_assert!(catch_up.first_seq >= passed.unwrap_or(0));
            }
            for w in [&tail, &catch_up] {
                for (i, r) in w.records.iter().enumerate() {
                    proptest::prop_assert_eq!(r.seq, w.first_seq + i as u64);
                }
                proptest::prop_assert_eq!(
                    w.bytes,
                    w.records.iter().map(|r| r.item.payload.len()).sum::<usize>()
                );
            }
            for (pos, wanted) in positions.iter_mut().zip([read_a, read_b]) {
                for _ in 0..wanted {
                    if *pos >= next {
                        break;
                    }
                    let window = if *pos >= tail.first_seq { &tail } else { &catch_up };
                    if window.holds(*pos) {
                        let mut out = Vec::new();
                        window.read_from(*pos, &mut out, &mut ReadBudget::new(1, usize::MAX), &|_| 1);
                        proptest::prop_assert_eq!(out.len(), 1);
                        proptest::prop_assert_eq!(out[0].seq, *pos);
                    }
                    *pos += 1;
                }
            }
        }
    }
}
