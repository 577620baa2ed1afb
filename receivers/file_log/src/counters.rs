//! The file_log receiver's own counters (`docs/metrics.md`). Accepted and refused records are
//! counted by the shared receiver counters (`sluice_core::telemetry`).

/// Lines read (before multi-line joining).
pub const LINES: &str = "sluice_file_log_read_lines_total";
/// Bytes read.
pub const BYTES: &str = "sluice_file_log_read_bytes_total";
/// Files by `event`: `opened`, `rotated` (renamed or removed while open), `truncated`
/// (copytruncate), `closed` (a rotated file read to its end), `lost` (a file with a recorded
/// position that could not be found again at start).
pub const FILES: &str = "sluice_file_log_files_total";
/// Files open now.
pub const OPEN_FILES: &str = "sluice_file_log_open_files";
/// Entries whose parsing failed, by `reason`: `invalid_json`, `not_an_object`, `no_match`,
/// `timestamp`, `severity`. The entry is kept with its line as the body.
pub const PARSE_FAILURES: &str = "sluice_file_log_parse_failures_total";
/// Entries cut at `max_entry_size`.
pub const CUT: &str = "sluice_file_log_cut_entries_total";
/// Entries read again after a restart that the previous run had already handed to the spool:
/// the upper bound of the duplicates a crash caused.
pub const REREAD: &str = "sluice_file_log_reread_entries_total";
/// Failures by `reason`: `scan`, `open`, `read`, `positions` (writing the positions file).
pub const ERRORS: &str = "sluice_file_log_errors_total";

pub fn lines_read(id: &str, n: u64) {
    if n > 0 {
        metrics::counter!(LINES, "component_id" => id.to_owned()).increment(n);
    }
}

pub fn bytes_read(id: &str, n: u64) {
    metrics::counter!(BYTES, "component_id" => id.to_owned()).increment(n);
}

pub fn file_event(id: &str, event: &'static str) {
    metrics::counter!(FILES, "component_id" => id.to_owned(), "event" => event).increment(1);
}

pub fn open_files(id: &str, n: usize) {
    metrics::gauge!(OPEN_FILES, "component_id" => id.to_owned()).set(n as f64);
}

pub fn parse_failure(id: &str, reason: &'static str) {
    metrics::counter!(PARSE_FAILURES, "component_id" => id.to_owned(), "reason" => reason)
        .increment(1);
}

pub fn entry_cut(id: &str) {
    metrics::counter!(CUT, "component_id" => id.to_owned()).increment(1);
}

pub fn reread(id: &str, n: u64) {
    if n > 0 {
        metrics::counter!(REREAD, "component_id" => id.to_owned()).increment(n);
    }
}

pub fn error(id: &str, reason: &'static str) {
    metrics::counter!(ERRORS, "component_id" => id.to_owned(), "reason" => reason).increment(1);
}
