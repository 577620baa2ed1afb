//! The bodies of the fuzz targets in `fuzz/`, one function per parser that takes outside bytes.
//!
//! Each function takes arbitrary bytes and must return without panicking; where the parser
//! promises more (a chunked feed parses like a whole one, a conversion produces valid OTLP),
//! it asserts that. The libFuzzer binaries in `fuzz/fuzz_targets/` only call these, and
//! `tests/corpus.rs` replays the seed corpora and the regression inputs through them as an
//! ordinary test, so `./test.sh` checks every target without the instrumented build.
//! Each target is a feature, so the instrumented build compiles only what it needs.

/// A target: its name (the directory under `fuzz/seeds/` and `fuzz/regressions/`) and body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target this build has.
pub const TARGETS: &[Target] = &[
    #[cfg(feature = "otlp_protobuf")]
    ("otlp_protobuf", otlp_protobuf),
    #[cfg(feature = "otlp_json")]
    ("otlp_json", otlp_json),
    #[cfg(feature = "body_decompress")]
    ("body_decompress", body_decompress),
    #[cfg(feature = "sse")]
    ("sse", sse),
    #[cfg(feature = "awf_event")]
    ("awf_event", awf_event),
    #[cfg(feature = "webhook")]
    ("webhook", webhook),
    #[cfg(feature = "spool_files")]
    ("spool_files", spool_files),
    #[cfg(feature = "config")]
    ("config", config),
    #[cfg(feature = "alloy")]
    ("alloy", alloy),
    #[cfg(feature = "loki_push")]
    ("loki_push", loki_push),
    #[cfg(feature = "sink_push")]
    ("sink_push", sink_push),
    #[cfg(feature = "prometheus_text")]
    ("prometheus_text", prometheus_text),
    #[cfg(feature = "file_sd")]
    ("file_sd", file_sd),
    #[cfg(feature = "file_log")]
    ("file_log", file_log),
    #[cfg(feature = "loki_otlp")]
    ("loki_otlp", loki_otlp),
];

/// The OTLP protobuf walker and the intake rules: `check` accepts exactly what `validate`
/// accepts, with the same count.
#[cfg(feature = "otlp_protobuf")]
pub fn otlp_protobuf(data: &[u8]) {
    use sluice_otlp::{Rules, Signal};
    for signal in Signal::ALL {
        let counted = sluice_otlp::validate(signal, data);
        let _ = sluice_otlp::count_items(signal, data);
        if let Ok(checked) = sluice_otlp::check(signal, data, &Rules::default()) {
            assert_eq!(counted.ok(), Some(checked.items));
        }
    }
}

/// OTLP/JSON to protobuf: what it produces passes the walker with the count it reported.
#[cfg(feature = "otlp_json")]
pub fn otlp_json(data: &[u8]) {
    for signal in sluice_otlp::Signal::ALL {
        if let Ok((payload, count)) = sluice_otlp::json_to_protobuf(signal, data) {
            assert_eq!(sluice_otlp::validate(signal, &payload).ok(), Some(count));
        }
    }
}

/// The OTLP/HTTP receiver's capped gzip/deflate decoding. The first byte picks the encoding
/// and the cap; the output never passes the cap.
#[cfg(feature = "body_decompress")]
pub fn body_decompress(data: &[u8]) {
    use sluice_receiver_otlp::{ContentEncoding, decompress};
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let encoding = match selector % 3 {
        0 => ContentEncoding::Gzip,
        1 => ContentEncoding::Zlib,
        _ => ContentEncoding::Identity,
    };
    let cap = usize::from(selector / 3) * 1024;
    if let Ok(out) = decompress(encoding, bytes::Bytes::copy_from_slice(body), cap) {
        assert!(
            out.len() <= cap,
            "{} bytes out with a cap of {cap}",
            out.len()
        );
    }
}

/// The Server-Sent Events parser (AWF stream, MCP replies): fed in two chunks (split where the first byte
/// says) or a byte at a time, it dispatches exactly what one whole feed dispatches; with tiny
/// limits it still never panics.
#[cfg(feature = "sse")]
pub fn sse(data: &[u8]) {
    use sluice_http_client::sse::{SseParser, parse_all};
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let whole = parse_all(stream);
    let (a, b) = stream.split_at(usize::from(split).min(stream.len()));
    let mut parser = SseParser::new();
    let mut two = Vec::new();
    parser.feed(a, &mut two);
    parser.feed(b, &mut two);
    assert_eq!(whole, two, "split at {}", a.len());
    let mut parser = SseParser::new();
    let mut bytewise = Vec::new();
    for byte in stream.chunks(1) {
        parser.feed(byte, &mut bytewise);
    }
    assert_eq!(whole, bytewise, "fed a byte at a time");
    let mut small = SseParser::with_limits(16, 64);
    let mut out = Vec::new();
    small.feed(stream, &mut out);
}

/// AWF event JSON as the push endpoint (one event, an array, or NDJSON) and the SSE stream (one
/// event per `data`) read it, then converted: every item the converter makes is valid OTLP
/// with the count it claims.
#[cfg(feature = "awf_event")]
pub fn awf_event(data: &[u8]) {
    use sluice_receiver_awf::convert::{ConvertConfig, Converter};
    use sluice_receiver_awf::event::WorkflowEvent;
    use sluice_receiver_awf::push::parse_body;

    fn check_valid(item: Option<sluice_core::Item>) {
        if let Some(item) = item {
            let counted = sluice_otlp::validate(item.signal, &item.payload);
            assert_eq!(counted.ok(), Some(item.count), "{:?} item", item.signal);
        }
    }
    let now: u64 = 1_700_000_000_000_000_000;
    let mut converter = Converter::new(ConvertConfig {
        dedup_window: 64,
        max_open_executions: 8,
        max_series: 32,
        ..Default::default()
    });
    let mut batches = Vec::new();
    for ndjson in [false, true] {
        if let Ok(events) = parse_body(data, ndjson) {
            batches.push(events);
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(event) = WorkflowEvent::from_json(text)
    {
        batches.push(vec![event]);
    }
    for events in batches {
        let pending = converter.convert(events, now);
        check_valid(pending.traces_item());
        check_valid(pending.logs_item());
        converter.commit(pending, now);
    }
    let later = now + 86_400 * 1_000_000_000;
    let expired = converter.expire(later);
    check_valid(expired.traces_item());
    check_valid(expired.logs_item());
    converter.commit(expired, later);
    check_valid(converter.metrics_item(later));
}

/// Grafana and Alertmanager webhook bodies as the watcher reads them; what it derives from an
/// alert never panics, and an alert written to its store reads back unchanged.
#[cfg(feature = "webhook")]
pub fn webhook(data: &[u8]) {
    use sluice_watcher::alert::{Alert, WebhookPayload, incident_id};
    let Ok(payload) = WebhookPayload::from_json(data) else {
        return;
    };
    for alert in &payload.alerts {
        let _ = (alert.is_test(), alert.is_firing(), alert.is_resolved());
        let key = alert.incident_key();
        let _ = incident_id(&key);
        let stored = serde_json::to_vec(alert);
        assert!(stored.is_ok(), "an alert does not serialize: {stored:?}");
        let back = serde_json::from_slice::<Alert>(&stored.unwrap_or_default());
        assert_eq!(back.as_ref().ok(), Some(alert), "{back:?}");
    }
}

/// The spool's recovery path: a segment file and a cursor file (the first 20 bytes) as found
/// on disk after a crash. Opening validates and truncates; the reader then reads what is left,
/// in sequence order, never more records than recovery counted.
#[cfg(feature = "spool_files")]
pub fn spool_files(data: &[u8]) {
    use sluice_core::ByteSize;
    use sluice_spool::{Spool, SpoolConfig, cursor_path, segment_path};
    let (cursor, segment) = data.split_at(data.len().min(20));
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let cursors = dir.path().join("cursors");
    let written = std::fs::create_dir_all(&cursors)
        .and_then(|_| std::fs::write(segment_path(dir.path(), 0), segment))
        .and_then(|_| std::fs::write(cursor_path(&cursors, "a"), cursor));
    if written.is_err() {
        return;
    }
    let config = SpoolConfig {
        segment_bytes: ByteSize(4096),
        max_bytes: ByteSize::mib(64),
        ..Default::default()
    };
    let Ok((spool, report)) = Spool::open("fuzz", dir.path(), config, &["a".to_owned()]) else {
        return;
    };
    if let Some(mut reader) = spool.reader("a") {
        let mut read = 0u64;
        let mut last: Option<u64> = None;
        loop {
            let batch = reader.read(16, 1 << 20);
            if batch.is_empty() {
                break;
            }
            for record in batch {
                assert!(last.is_none_or(|l| record.seq > l), "sequence went back");
                last = Some(record.seq);
                read += 1;
            }
        }
        assert!(
            read <= report.records,
            "{read} read, {} recovered",
            report.records
        );
    }
    spool.close();
}

/// Sluice's config loader on a TOML (or Alloy-looking) file: a `Config` or a located error.
/// Half the variables it references are set.
#[cfg(feature = "config")]
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| {
        name.len()
            .is_multiple_of(2)
            .then(|| format!("value-of-{name}"))
    };
    let _ = sluice::config::parse(std::path::Path::new("fuzz.toml"), text, &env);
}

/// The Alloy-syntax parser and its mapping to Sluice TOML: what it writes is valid TOML with one
/// origin per line.
#[cfg(feature = "alloy")]
pub fn alloy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = sluice_alloy::check_syntax(text);
    if let Ok(converted) = sluice_alloy::convert(text, &|_| None) {
        let parsed = converted.toml.parse::<toml::Table>();
        assert!(parsed.is_ok(), "{parsed:?} in\n{}", converted.toml);
    }
}

/// The test Loki's push decoding (snappy protobuf or JSON, optionally gzip/deflate). The first
/// byte picks the content type and encoding.
#[cfg(feature = "loki_push")]
pub fn loki_push(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = [
        None,
        Some("application/json"),
        Some("application/x-protobuf"),
    ][usize::from(selector % 3)];
    let encoding =
        [None, Some("gzip"), Some("deflate"), Some("snappy")][usize::from(selector / 3 % 4)];
    let _ = sluice_testkit::loki::decode_push(encoding, content_type, body, 1 << 20);
}

/// The benchmark sink's remote-write (v1 and v2) and Loki push counters.
#[cfg(feature = "sink_push")]
pub fn sink_push(data: &[u8]) {
    use sluice_loadgen::sink::{loki_entries, remote_write_samples};
    let _ = remote_write_samples(None, data);
    let _ = remote_write_samples(
        Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
        data,
    );
    let _ = loki_entries(data);
}

/// A scraped Prometheus text / OpenMetrics body (the first byte picks the format and
/// `honor_labels`), parsed and turned into the series of a scrape, then into the OTLP item the
/// receiver hands on: that item is valid OTLP with the count the encoder reports, and so is the
/// item of stale markers when the target goes away.
#[cfg(feature = "prometheus_text")]
pub fn prometheus_text(data: &[u8]) {
    use sluice_receiver_prometheus::parse::{Format, parse};
    use sluice_receiver_prometheus::scrape::{Outcome, SampleRules, SeriesCache};
    use sluice_receiver_prometheus::{otlp, target::Target};
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    let format = if selector & 1 == 0 {
        Format::Text
    } else {
        Format::OpenMetrics
    };
    let Ok(exposition) = parse(text, format) else {
        return;
    };
    let target = Target {
        url: "http://127.0.0.1:9100/metrics".into(),
        labels: vec![
            ("instance".into(), "127.0.0.1:9100".into()),
            ("job".into(), "fuzz".into()),
        ],
    };
    let rules = SampleRules {
        honor_labels: selector & 2 != 0,
        honor_timestamps: selector & 4 != 0,
        metric_relabel: &[],
    };
    let check = |points: &[sluice_receiver_prometheus::scrape::Point]| {
        let (payload, count) = otlp::encode(points, "fuzz", "127.0.0.1:9100");
        let counted = sluice_otlp::validate(sluice_otlp::Signal::Metrics, &payload);
        assert_eq!(counted.ok(), Some(count), "{} points", points.len());
    };
    let mut cache = SeriesCache::default();
    let report = cache.process(
        &target,
        Outcome::Scraped(exposition),
        1_700_000_000_000,
        0.01,
        &rules,
    );
    assert!(report.post_relabel <= report.scraped);
    check(&report.points);
    check(&cache.end(&target, 1_700_000_015_000));
}

/// A `file_sd` target file, read as JSON and as YAML; every address of every group it
/// accepts becomes a target (or is skipped with a reason) without panicking.
#[cfg(feature = "file_sd")]
pub fn file_sd(data: &[u8]) {
    use sluice_receiver_prometheus::{Config, file_sd, target};
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>("") else {
        return;
    };
    for name in ["targets.json", "targets.yml"] {
        let path = dir.path().join(name);
        if std::fs::write(&path, data).is_err() {
            return;
        }
        let Ok(groups) = file_sd::read_file(&path) else {
            continue;
        };
        for group in &groups {
            for address in &group.targets {
                if let Ok(t) = target::populate(&config, "fuzz", &[], group, address) {
                    assert!(
                        t.url.starts_with("http://") || t.url.starts_with("https://"),
                        "{t:?}"
                    );
                }
            }
        }
    }
}

/// The `file_log` receiver over a log file and across a restart: the file is read to its end
/// (lines, `multiline` joining, entry cuts at `max_entry_size`, `format` json / regex with time
/// and severity), the positions are saved and read back, then the file is appended to or
/// replaced and a new tailer resumes from those positions (or from fuzzed offsets). Every
/// batch becomes a valid OTLP logs item with one record per entry, and no recorded offset
/// passes the file's end.
///
/// Bytes: flags (bits 0-1 format, 2 multiline, 3 append rather than replace, 4 fuzzed
/// offsets, 5 commit the first run rather than abandon it, 6-7 time layout), where the
/// content splits into the first and second writes, two little-endian `u16` offsets, then
/// the content.
#[cfg(feature = "file_log")]
pub fn file_log(data: &[u8]) {
    use prost::Message;
    use sluice_receiver_file_log::{Config, Position, PositionsFile, Tailer};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let [flags, split, o1, o2, p1, p2, content @ ..] = data else {
        return;
    };
    let flags = *flags;
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let (first, second) = content.split_at(content.len() * usize::from(*split) / 255);
    let format = match flags & 3 {
        0 => "",
        1 | 3 => {
            "format = \"json\"\ntimestamp = { field = \"ts\", layout = \"LAYOUT\" }\nseverity = { field = \"level\" }\n"
        }
        _ => {
            "format = \"regex\"\nregex = '^(?P<ts>\\S+) (?P<level>\\w+) (?P<msg>.*)$'\ntimestamp = { field = \"ts\", layout = \"LAYOUT\" }\nseverity = { field = \"level\" }\n"
        }
    };
    let layout = ["rfc3339", "unix", "unix_ms", "unix_ns"][usize::from(flags >> 6)];
    let multiline = if flags & 4 != 0 {
        "multiline = { line_start_pattern = '^\\S', max_lines = 3 }\n"
    } else {
        ""
    };
    let text = format!(
        "include = [\"{}/*.log\"]\nstart_at = \"beginning\"\nmax_entry_size = 64\nmax_batch_entries = 4\ninclude_file_path = true\n{}{multiline}",
        dir.path().display(),
        format.replace("LAYOUT", layout),
    );
    let Ok(config) = toml::from_str::<Config>(&text) else {
        return;
    };
    assert!(config.validate().is_ok(), "{text}");
    let parser = sluice_receiver_file_log::Parser::new(&config, Arc::from("fuzz"));
    let log = dir.path().join("app.log");
    if std::fs::write(&log, first).is_err() {
        return;
    }
    let now = Instant::now();
    let later = now + Duration::from_secs(3600);

    // Reads to the end (at `now`, then once more at `later` so joined entries are flushed).
    let drain = |tailer: &mut Tailer, commit: bool| {
        tailer.scan();
        for at in [now, later] {
            for _ in 0..10_000 {
                let batch = tailer.read(at);
                if batch.entries.is_empty() && batch.marks.is_empty() {
                    break;
                }
                let request = parser.request(&batch.entries, 1);
                let payload = request.encode_to_vec();
                let counted = sluice_otlp::validate(sluice_otlp::Signal::Logs, &payload);
                assert_eq!(counted.ok(), Some(batch.entries.len() as u32));
                tailer.begin(&batch.marks);
                if commit {
                    tailer.commit(&batch.marks);
                } else {
                    tailer.abandon(&batch.marks);
                    break;
                }
            }
        }
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        for p in tailer.positions() {
            assert!(p.offset <= size, "{p:?} past the end ({size} bytes)");
        }
    };

    let mut tailer = Tailer::new(&config, Arc::from("fuzz"), Vec::new());
    drain(&mut tailer, flags & 32 != 0);
    let Ok((positions_file, _)) = PositionsFile::open(&dir.path().join("positions")) else {
        return;
    };
    if positions_file.save(&tailer.positions()).is_err() {
        return;
    }
    drop(tailer);
    let Ok((_, mut recorded)) = PositionsFile::open(&dir.path().join("positions")) else {
        return;
    };
    if flags & 16 != 0 {
        for p in &mut recorded {
            *p = Position {
                offset: u64::from(u16::from_le_bytes([*o1, *o2])),
                pending_end: u64::from(u16::from_le_bytes([*p1, *p2])),
                ..p.clone()
            };
        }
    }
    let written = if flags & 8 != 0 {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| std::io::Write::write_all(&mut f, second))
    } else {
        // Replaced in place (same inode), as copytruncate and a rewrite leave it.
        std::fs::write(&log, second)
    };
    if written.is_err() {
        return;
    }
    let mut tailer = Tailer::new(&config, Arc::from("fuzz"), recorded);
    drain(&mut tailer, true);
}

/// The Loki exporter's OTLP logs decoding: what `otlp::decode` reads as views, prost accepts
/// with the same values (seen through `LogsRequest::from_proto`); `otlp::with_request`
/// accepts exactly what prost accepts.
#[cfg(feature = "loki_otlp")]
pub fn loki_otlp(data: &[u8]) {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;
    use sluice_exporter_loki::otlp;
    let prost = ExportLogsServiceRequest::decode(data);
    if let Some(view) = otlp::decode(data) {
        let Ok(prost) = &prost else {
            panic!("the views accept what prost refuses: {prost:?}");
        };
        // `Debug` text, so that a NaN compares equal to itself.
        assert_eq!(
            format!("{view:?}"),
            format!("{:?}", otlp::LogsRequest::from_proto(prost))
        );
    }
    assert_eq!(otlp::with_request(data, |_| ()).is_ok(), prost.is_ok());
}
