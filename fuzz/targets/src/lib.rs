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
