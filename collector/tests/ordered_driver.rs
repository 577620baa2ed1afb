//! The exporter driver with an ordered exporter (remote-write, Loki): batches are converted and
//! sent in spool order, one send at a time per ordered lane, while later batches are converted
//! ahead.

use bytes::Bytes;
use sluice::pipeline::{DriverSettings, run_driver};
use sluice_core::batch::BatchConfig;
use sluice_core::retry::RetryConfig;
use sluice_core::{Batch, Exporter, Item, SendOutcome, Signal};
use sluice_spool::{Fsync, Spool, SpoolConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Converted(u32),
    SendStarted(u32),
    SendFinished(u32),
}

/// Records what happens, in order; each request is the first item's count (its number).
#[derive(Default)]
struct Recorder {
    events: parking_lot::Mutex<Vec<Event>>,
    sending: AtomicUsize,
    overlapped: AtomicBool,
    fail_first_send: AtomicBool,
}

impl Exporter for Recorder {
    type Request = u32;

    fn ordered(&self) -> bool {
        true
    }

    fn build_requests(&self, batch: &Batch) -> Vec<u32> {
        let first = batch.items[0].count;
        if self.sending.load(Ordering::SeqCst) > 0 {
            self.overlapped.store(true, Ordering::SeqCst);
        }
        self.events.lock().push(Event::Converted(first));
        vec![first]
    }

    fn request_items(&self, _: &u32) -> u64 {
        1
    }

    async fn send(&self, request: &u32) -> SendOutcome {
        let concurrent = self.sending.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            concurrent, 0,
            "an ordered exporter sends one request at a time"
        );
        self.events.lock().push(Event::SendStarted(*request));
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.sending.fetch_sub(1, Ordering::SeqCst);
        // A retry must keep the next batch waiting, not let it overtake.
        if self.fail_first_send.swap(false, Ordering::SeqCst) {
            return SendOutcome::Retryable {
                reason: "test",
                retry_after: Some(Duration::from_millis(30)),
                message: "try again".into(),
            };
        }
        self.events.lock().push(Event::SendFinished(*request));
        SendOutcome::Sent
    }
}

/// A spool holding `batches` one-item records (item n carries count n) and driver settings that
/// make every record its own batch.
async fn spool_of_numbered_batches(
    name: &str,
    batches: u32,
) -> (tempfile::TempDir, Spool, DriverSettings) {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(
        name,
        dir.path(),
        SpoolConfig {
            fsync: Fsync::None,
            ..Default::default()
        },
        &[name.to_string()],
    )
    .unwrap();
    for n in 1..=batches {
        spool
            .append(Item::new(Signal::Metrics, Bytes::from_static(b"x"), n))
            .unwrap()
            .await
            .unwrap();
    }
    let settings = DriverSettings {
        component_id: format!("exporters.{name}").into(),
        pipeline: name.into(),
        batch: BatchConfig {
            send_batch_size: 1,
            send_batch_max_size: 1,
            ..Default::default()
        },
        retry: RetryConfig::default(),
        dead_letter: None,
    };
    (dir, spool, settings)
}

/// Waits until the exporter `name` has committed `batches` records, then stops the driver.
async fn await_delivery(
    spool: &Spool,
    name: &str,
    batches: u32,
    driver: tokio::task::JoinHandle<()>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while spool.cursor(name).unwrap().committed < u64::from(batches) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spool.close();
    driver.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_exporter_converts_ahead_but_sends_in_spool_order() {
    // One item per batch: item n carries count n, so every batch is named by its item.
    const BATCHES: u32 = 12;
    let (_dir, spool, settings) = spool_of_numbered_batches("rec", BATCHES).await;
    let recorder = Arc::new(Recorder {
        fail_first_send: AtomicBool::new(true),
        ..Default::default()
    });
    let driver = tokio::spawn(run_driver(
        recorder.clone(),
        spool.reader("rec").unwrap(),
        settings,
    ));
    await_delivery(&spool, "rec", BATCHES, driver).await;

    let events = recorder.events.lock().clone();
    let of = |f: fn(&Event) -> Option<u32>| events.iter().filter_map(f).collect::<Vec<_>>();
    let all: Vec<u32> = (1..=BATCHES).collect();
    assert_eq!(
        of(|e| match e {
            Event::Converted(n) => Some(*n),
            _ => None,
        }),
        all,
        "conversion in spool order"
    );
    assert_eq!(
        of(|e| match e {
            Event::SendFinished(n) => Some(*n),
            _ => None,
        }),
        all,
        "sends in spool order"
    );
    // Batch 1 was retried: batch 2 started sending only after batch 1 finished.
    let finished_1 = events
        .iter()
        .position(|e| *e == Event::SendFinished(1))
        .unwrap();
    let started_2 = events
        .iter()
        .position(|e| *e == Event::SendStarted(2))
        .unwrap();
    assert!(finished_1 < started_2, "{events:?}");
    assert!(
        recorder.overlapped.load(Ordering::SeqCst),
        "a later batch was converted while an earlier one was being sent"
    );
}

/// Three ordered lanes; every batch has one request per lane. Lane 0's first request is held
/// until lane 1 has finished batch 3, which only happens if lanes do not wait for each other.
#[derive(Default)]
struct ThreeLanes {
    finished: parking_lot::Mutex<Vec<(u32, usize)>>,
    sending: [AtomicUsize; 3],
    lane_0_was_overtaken: AtomicBool,
}

impl Exporter for ThreeLanes {
    type Request = (u32, usize);

    fn ordered(&self) -> bool {
        true
    }

    fn lanes(&self) -> usize {
        3
    }

    fn lane(&self, request: &(u32, usize)) -> usize {
        request.1
    }

    fn build_requests(&self, batch: &Batch) -> Vec<(u32, usize)> {
        let n = batch.items[0].count;
        vec![(n, 0), (n, 1), (n, 2)]
    }

    fn request_items(&self, _: &(u32, usize)) -> u64 {
        1
    }

    async fn send(&self, &(n, lane): &(u32, usize)) -> SendOutcome {
        assert_eq!(
            self.sending[lane].fetch_add(1, Ordering::SeqCst),
            0,
            "a lane sends one request at a time"
        );
        if (n, lane) == (1, 0) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while tokio::time::Instant::now() < deadline {
                if self.finished.lock().contains(&(3, 1)) {
                    self.lane_0_was_overtaken.store(true, Ordering::SeqCst);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.finished.lock().push((n, lane));
        self.sending[lane].fetch_sub(1, Ordering::SeqCst);
        SendOutcome::Sent
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_lanes_keep_their_own_order_and_do_not_wait_for_each_other() {
    const BATCHES: u32 = 10;
    let (_dir, spool, settings) = spool_of_numbered_batches("lanes", BATCHES).await;
    let exporter = Arc::new(ThreeLanes::default());
    let driver = tokio::spawn(run_driver(
        exporter.clone(),
        spool.reader("lanes").unwrap(),
        settings,
    ));
    await_delivery(&spool, "lanes", BATCHES, driver).await;

    assert!(
        exporter.lane_0_was_overtaken.load(Ordering::SeqCst),
        "lane 1 finished batch 3 while lane 0 still sent batch 1"
    );
    let finished = exporter.finished.lock().clone();
    for lane in 0..3 {
        let order: Vec<u32> = finished
            .iter()
            .filter(|(_, l)| *l == lane)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(order, (1..=BATCHES).collect::<Vec<_>>(), "lane {lane}");
    }
}

/// An ordered exporter whose conversion keeps no state across batches (Loki): conversions may
/// run at the same time, off the driver task; sends stay one at a time, in spool order.
#[derive(Default)]
struct Stateless {
    converting: AtomicUsize,
    most_converting: AtomicUsize,
    sending: AtomicUsize,
    sent: parking_lot::Mutex<Vec<u32>>,
}

impl Exporter for Stateless {
    type Request = u32;

    fn ordered(&self) -> bool {
        true
    }

    fn converts_in_order(&self) -> bool {
        false
    }

    fn build_requests(&self, batch: &Batch) -> Vec<u32> {
        let now = self.converting.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_converting.fetch_max(now, Ordering::SeqCst);
        // Long enough for the driver to start the next batches' conversions meanwhile.
        std::thread::sleep(Duration::from_millis(50));
        self.converting.fetch_sub(1, Ordering::SeqCst);
        vec![batch.items[0].count]
    }

    fn request_items(&self, _: &u32) -> u64 {
        1
    }

    async fn send(&self, request: &u32) -> SendOutcome {
        let concurrent = self.sending.fetch_add(1, Ordering::SeqCst);
        assert_eq!(concurrent, 0, "an ordered lane sends one request at a time");
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.sent.lock().push(*request);
        self.sending.fetch_sub(1, Ordering::SeqCst);
        SendOutcome::Sent
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_conversion_runs_concurrently_and_sends_stay_in_spool_order() {
    const BATCHES: u32 = 12;
    let (_dir, spool, settings) = spool_of_numbered_batches("stateless", BATCHES).await;
    let exporter = Arc::new(Stateless::default());
    let driver = tokio::spawn(run_driver(
        exporter.clone(),
        spool.reader("stateless").unwrap(),
        settings,
    ));
    await_delivery(&spool, "stateless", BATCHES, driver).await;
    assert_eq!(
        *exporter.sent.lock(),
        (1..=BATCHES).collect::<Vec<_>>(),
        "sends in spool order"
    );
    assert!(
        exporter.most_converting.load(Ordering::SeqCst) >= 2,
        "batches converted at the same time"
    );
}
