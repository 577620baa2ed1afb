//! An incremental Server-Sent Events parser following the WHATWG HTML "interpreting an event
//! stream" rules (§9.2.5–9.2.6), fed with arbitrary byte chunks.
//!
//! * Lines end at LF, CR or CRLF; a CR at the end of one chunk and an LF at the start of the next
//!   are one line end.
//! * One leading U+FEFF (BOM) of the stream is skipped; a second one is part of the field name.
//! * Bytes are decoded as UTF-8 per line, invalid sequences becoming U+FFFD, so multi-byte
//!   characters split across chunks decode correctly.
//! * An event is dispatched at a blank line; an unterminated event at the end of the stream is
//!   never dispatched (the caller simply stops feeding).

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` field, or `"message"`.
    pub event_type: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// The stream's last event ID at dispatch time (sticky across events).
    pub last_event_id: String,
}

/// Parser state for one connection. Keep the [`SseParser::last_event_id`] across reconnects
/// and send it as `Last-Event-ID`; create a fresh parser for each connection.
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF starting the next chunk belongs to that line end.
    last_was_cr: bool,
    /// Still at the very start of the stream (a BOM may follow).
    at_stream_start: bool,
    data: String,
    event_type: String,
    /// True once a `data` field was seen in the current event (even an empty one).
    has_data: bool,
    id_buffer: String,
    last_event_id: String,
    retry_ms: Option<u64>,
    max_line_bytes: usize,
    max_event_bytes: usize,
    /// The current line or event outgrew its limit: skip it, count it once.
    line_overflow: bool,
    event_overflow: bool,
    oversized: u64,
}

/// Default cap on one line and on one event's data (4 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

impl Default for SseParser {
    fn default() -> Self {
        SseParser::new()
    }
}

impl SseParser {
    pub fn new() -> SseParser {
        SseParser::with_limits(DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that skips lines longer than `max_line_bytes` and events whose data exceeds
    /// `max_event_bytes`, counting them in [`SseParser::oversized`], so a hostile stream cannot
    /// exhaust memory.
    pub fn with_limits(max_line_bytes: usize, max_event_bytes: usize) -> SseParser {
        SseParser {
            line: Vec::new(),
            last_was_cr: false,
            at_stream_start: true,
            data: String::new(),
            event_type: String::new(),
            has_data: false,
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            max_line_bytes,
            max_event_bytes,
            line_overflow: false,
            event_overflow: false,
            oversized: 0,
        }
    }

    /// Starts from a known last event ID (a previous connection's).
    pub fn with_last_event_id(mut self, id: &str) -> SseParser {
        id.clone_into(&mut self.id_buffer);
        id.clone_into(&mut self.last_event_id);
        self
    }

    /// The last event ID to send as `Last-Event-ID` when reconnecting (empty: send none).
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time set by the last valid `retry:` field, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Lines and events skipped because they exceeded the limits.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Feeds one chunk; dispatched events are appended to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) {
        if chunk.is_empty() {
            return;
        }
        if self.last_was_cr {
            self.last_was_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.push_line_bytes(chunk);
                    return;
                }
                Some(pos) => {
                    let (head, rest) = chunk.split_at(pos);
                    self.push_line_bytes(head);
                    let is_cr = rest.first() == Some(&b'\r');
                    chunk = rest.get(1..).unwrap_or_default();
                    if is_cr {
                        match chunk.first() {
                            Some(b'\n') => chunk = chunk.get(1..).unwrap_or_default(),
                            // The LF may still arrive as the first byte of the next chunk.
                            None => self.last_was_cr = true,
                            Some(_) => {}
                        }
                    }
                    self.end_line(out);
                }
            }
        }
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if self.line_overflow {
            return;
        }
        if self.line.len() + bytes.len() > self.max_line_bytes {
            self.line_overflow = true;
            self.line.clear();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        if self.line_overflow {
            self.line_overflow = false;
            self.at_stream_start = false;
            self.oversized += 1;
            // The skipped line may have been a data line: never dispatch a truncated event.
            self.event_overflow = true;
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        let mut bytes: &[u8] = &line;
        if self.at_stream_start {
            self.at_stream_start = false;
            if let Some(rest) = bytes.strip_prefix("\u{FEFF}".as_bytes()) {
                bytes = rest;
            }
        }
        let text = String::from_utf8_lossy(bytes);
        self.process_line(&text, out);
        line.clear();
        self.line = line; // keep the allocation
    }

    fn process_line(&mut self, line: &str, out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line.starts_with(':') {
            return; // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event_type),
            "data" => {
                if self.event_overflow {
                    return;
                }
                if self.data.len() + value.len() + 1 > self.max_event_bytes {
                    self.event_overflow = true;
                    self.data.clear();
                    return;
                }
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            // An id containing NUL is ignored as a whole.
            "id" if !value.contains('\0') => value.clone_into(&mut self.id_buffer),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                // Absurdly long digit runs saturate instead of being ignored.
                self.retry_ms = Some(value.parse().unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        self.last_event_id.clone_from(&self.id_buffer);
        let event_type = std::mem::take(&mut self.event_type);
        let has_data = std::mem::replace(&mut self.has_data, false);
        if std::mem::replace(&mut self.event_overflow, false) {
            self.data.clear();
            self.oversized += 1;
            return;
        }
        if !has_data {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        out.push(SseEvent {
            event_type: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data,
            last_event_id: self.last_event_id.clone(),
        });
    }
}

/// Feeds a whole stream at once (tests, benchmarks).
pub fn parse_all(stream: &[u8]) -> Vec<SseEvent> {
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    parser.feed(stream, &mut out);
    out
}

/// True when a `Content-Type` value's MIME essence is `text/event-stream`.
pub fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event_type: &str, data: &str, id: &str) -> SseEvent {
        SseEvent {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: id.into(),
        }
    }

    /// Feeds `stream` split at every possible position (and byte by byte) and checks every
    /// split gives the same events: chunking must never matter.
    fn parse_every_split(stream: &[u8]) -> Vec<SseEvent> {
        let whole = parse_all(stream);
        for cut in 0..=stream.len() {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.feed(&stream[..cut], &mut out);
            p.feed(&stream[cut..], &mut out);
            assert_eq!(
                out,
                whole,
                "split at {cut} of {:?}",
                String::from_utf8_lossy(stream)
            );
        }
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for b in stream {
            p.feed(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(out, whole, "byte by byte");
        whole
    }

    // The cases below follow the web-platform-tests `eventsource/format-*` and `event-data`
    // tests; the vectors are our own.

    #[test]
    fn format_bom() {
        let got = parse_every_split("\u{FEFF}data: 1\n\ndata: 2\n\n".as_bytes());
        assert_eq!(got, vec![ev("message", "1", ""), ev("message", "2", "")]);
    }

    #[test]
    fn format_bom_2_only_one_bom_is_skipped() {
        // The second BOM makes the field name "\u{FEFF}data", which is unknown: no event 1.
        let got = parse_every_split("\u{FEFF}\u{FEFF}data: 1\n\ndata: 2\n\n".as_bytes());
        assert_eq!(got, vec![ev("message", "2", "")]);
    }

    #[test]
    fn format_bom_only_at_stream_start() {
        let got = parse_every_split("data: 1\n\n\u{FEFF}data: 2\n\ndata: 3\n\n".as_bytes());
        assert_eq!(got, vec![ev("message", "1", ""), ev("message", "3", "")]);
    }

    #[test]
    fn format_comments() {
        let got = parse_every_split(b":\n: keep-alive\ndata:a\n:comment\ndata:b\n\n:x\n\n");
        assert_eq!(got, vec![ev("message", "a\nb", "")]);
    }

    #[test]
    fn format_data_before_final_empty_line_is_discarded() {
        let got = parse_every_split(b"data: done\n\ndata: not dispatched\n");
        assert_eq!(got, vec![ev("message", "done", "")]);
        let got = parse_every_split(b"data: done\r\n\r\ndata: no end");
        assert_eq!(got, vec![ev("message", "done", "")]);
    }

    #[test]
    fn format_field_data() {
        let got =
            parse_every_split(b"data:msg\ndata:msg\n\ndata\n\ndata:\n\ndata:  two spaces\n\n");
        assert_eq!(
            got,
            vec![
                ev("message", "msg\nmsg", ""),
                ev("message", "", ""),
                ev("message", "", ""),
                ev("message", " two spaces", ""),
            ]
        );
    }

    #[test]
    fn format_field_data_tab_is_not_stripped() {
        let got = parse_every_split(b"data:\tx\n\n");
        assert_eq!(got, vec![ev("message", "\tx", "")]);
    }

    #[test]
    fn format_field_event() {
        let got = parse_every_split(b"event: test\ndata: x\n\ndata: y\n\n");
        assert_eq!(got, vec![ev("test", "x", ""), ev("message", "y", "")]);
    }

    #[test]
    fn format_field_event_empty() {
        let got = parse_every_split(b"event: \ndata: x\n\n");
        assert_eq!(got, vec![ev("message", "x", "")]);
    }

    #[test]
    fn format_field_id() {
        let got = parse_every_split(b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n");
        assert_eq!(got, vec![ev("message", "a", "1"), ev("message", "b", "2")]);
    }

    #[test]
    fn format_field_id_2_is_sticky() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"id: 1\ndata: a\n\ndata: b\n\nid: 7\n\n", &mut out);
        assert_eq!(out, vec![ev("message", "a", "1"), ev("message", "b", "1")]);
        // An id-only block dispatches nothing but still updates the last event ID.
        assert_eq!(p.last_event_id(), "7");
    }

    #[test]
    fn format_field_id_3_empty_resets() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"id: 1\ndata: a\n\nid\ndata: b\n\n", &mut out);
        assert_eq!(out, vec![ev("message", "a", "1"), ev("message", "b", "")]);
        assert_eq!(p.last_event_id(), "");
    }

    #[test]
    fn format_field_id_null_is_ignored() {
        let got = parse_every_split(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n");
        assert_eq!(got, vec![ev("message", "a", "1"), ev("message", "b", "1")]);
    }

    #[test]
    fn format_field_id_not_applied_before_dispatch() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"id: 1\ndata: a\n\nid: 2\ndata: partial", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            p.last_event_id(),
            "1",
            "id of an undispatched event must not count"
        );
    }

    #[test]
    fn format_field_retry() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"retry: 3000\n\n", &mut out);
        assert_eq!(p.retry_ms(), Some(3000));
        assert!(out.is_empty());
        p.feed(b"retry\n\n", &mut out);
        assert_eq!(p.retry_ms(), Some(3000), "bare retry keeps the old value");
    }

    #[test]
    fn format_field_retry_bogus() {
        for bogus in [
            &b"retry: 1000x\n\n"[..],
            b"retry: -1\n\n",
            b"retry: 1.5\n\n",
            b"retry:  100\n\n",
            b"retry: \n\n",
        ] {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            p.feed(b"retry: 42\n\n", &mut out);
            p.feed(bogus, &mut out);
            assert_eq!(
                p.retry_ms(),
                Some(42),
                "{:?}",
                String::from_utf8_lossy(bogus)
            );
        }
        let mut p = SseParser::new();
        p.feed(b"retry: 99999999999999999999999\n\n", &mut Vec::new());
        assert_eq!(p.retry_ms(), Some(u64::MAX));
    }

    #[test]
    fn format_field_unknown_is_ignored() {
        let got = parse_every_split(b"foo: bar\ndata: x\nDATA: y\nData: z\n\n");
        assert_eq!(got, vec![ev("message", "x", "")]);
    }

    #[test]
    fn format_newlines_cr_crlf_lf_mixed() {
        let got = parse_every_split(b"data: a\rdata: b\r\ndata: c\n\rdata: d\r\r\n\ndata: e\n\n");
        assert_eq!(
            got,
            vec![
                ev("message", "a\nb\nc", ""),
                ev("message", "d", ""),
                ev("message", "e", "")
            ]
        );
    }

    #[test]
    fn format_cr_at_chunk_end_then_lf() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out);
        p.feed(b"", &mut out);
        p.feed(b"\ndata: b\r", &mut out);
        assert!(
            out.is_empty(),
            "CR LF across chunks is one line end: {out:?}"
        );
        p.feed(b"\n\r", &mut out);
        assert_eq!(out, vec![ev("message", "a\nb", "")]);
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out);
        p.feed(b"\n\r", &mut out);
        assert_eq!(out, vec![ev("message", "a", "")]);
        // A CR then a non-LF chunk: the CR alone ended the line.
        let mut p = SseParser::new();
        let mut out = Vec::new();
        p.feed(b"data: a\r", &mut out);
        p.feed(b"\r", &mut out);
        assert_eq!(out, vec![ev("message", "a", "")]);
    }

    #[test]
    fn format_null_character_in_data_is_kept() {
        let got = parse_every_split(b"data: a\x00b\n\n");
        assert_eq!(got, vec![ev("message", "a\0b", "")]);
    }

    #[test]
    fn format_utf8_split_and_invalid() {
        let got = parse_every_split("data: ok → ünïcödé 🚀\n\n".as_bytes());
        assert_eq!(got, vec![ev("message", "ok → ünïcödé 🚀", "")]);
        let got = parse_every_split(b"data: bad \xff\xfe end\n\n");
        assert_eq!(got, vec![ev("message", "bad \u{FFFD}\u{FFFD} end", "")]);
    }

    #[test]
    fn format_colon_in_value_and_no_space() {
        let got = parse_every_split(b"data:{\"a\": 1}\n\ndata: : x\n\n");
        assert_eq!(
            got,
            vec![ev("message", "{\"a\": 1}", ""), ev("message", ": x", "")]
        );
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let got = parse_every_split(b"event: ping\n\nid: 3\n\n\n\n");
        assert!(got.is_empty());
    }

    #[test]
    fn oversized_lines_and_events_are_skipped() {
        let mut p = SseParser::with_limits(16, 20);
        let mut out = Vec::new();
        p.feed(b"data: short\n\n", &mut out);
        p.feed(b"data: this line is far too long\n\n", &mut out);
        p.feed(b"data: 0123456789\ndata: 0123456789\n\n", &mut out);
        p.feed(b"data: after\n\n", &mut out);
        assert_eq!(
            out,
            vec![ev("message", "short", ""), ev("message", "after", "")]
        );
        assert_eq!(p.oversized(), 3); // the long line, its event, and the too-big event
    }

    #[test]
    fn mime_essence() {
        assert!(is_event_stream("text/event-stream"));
        assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
        assert!(is_event_stream(" text/event-stream ;x"));
        assert!(!is_event_stream("text/event-stream-bogus"));
        assert!(!is_event_stream("text/plain"));
        assert!(!is_event_stream(""));
    }
}
