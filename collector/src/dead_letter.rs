//! The dead-letter store: items a backend refused for good, kept on disk beside the spools
//! (`<storage>/dead-letter/`) with the backend's message, for an operator to inspect and replay
//! (`sluice dead-letter`, `/api/v1/dead-letter`). Bounded in bytes: the oldest entries go first,
//! counted. See docs/validation.md §3.
//!
//! One file per entry, `<time_ms>-<seq>.dl`: a JSON metadata line, then the OTLP protobuf
//! `Export*ServiceRequest` as it was sent. Written to a temporary name and renamed, so a crash
//! leaves whole entries only.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_core::Signal;
use sluice_core::time::now_unix_millis;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The store's directory under `--storage.path`.
pub const DIR: &str = "dead-letter";

/// Default bound of the store.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

pub const DEAD_LETTER_ITEMS: &str = "sluice_dead_letter_items_total";
pub const DEAD_LETTER_DROPPED: &str = "sluice_dead_letter_dropped_items_total";
pub const DEAD_LETTER_BYTES: &str = "sluice_dead_letter_bytes";

const SUFFIX: &str = ".dl";

/// What is known about one refused payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// `<time_ms>-<seq>`: sorts in arrival order.
    pub id: String,
    /// When it was refused, Unix milliseconds.
    pub time_ms: u64,
    /// `exporters.<name>`.
    pub exporter: String,
    pub pipeline: String,
    pub signal: Signal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The refusal's `reason` label (`bad_request`, `too_old`, ...; `docs/metrics.md`).
    pub reason: String,
    /// The backend's message.
    pub message: String,
    /// Items in the payload.
    pub items: u64,
    /// Payload size in bytes.
    pub bytes: u64,
}

/// A refused payload to store.
pub struct Letter<'a> {
    pub exporter: &'a str,
    pub pipeline: &'a str,
    pub signal: Signal,
    pub tenant: Option<&'a str>,
    pub reason: &'a str,
    pub message: &'a str,
    pub items: u64,
    pub payload: &'a [u8],
}

pub struct DeadLetterStore {
    dir: PathBuf,
    max_bytes: u64,
    state: parking_lot::Mutex<State>,
}

struct State {
    /// Bytes of all entry files.
    bytes: u64,
    seq: u64,
}

impl DeadLetterStore {
    /// Opens (creating) the store in `dir`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<DeadLetterStore> {
        fs::create_dir_all(dir)?;
        let store = DeadLetterStore {
            dir: dir.to_owned(),
            max_bytes,
            state: parking_lot::Mutex::new(State { bytes: 0, seq: 0 }),
        };
        let bytes = store.files()?.iter().map(|(_, len)| len).sum();
        store.state.lock().bytes = bytes;
        metrics::gauge!(DEAD_LETTER_BYTES).set(bytes as f64);
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entry files, oldest first, with their sizes.
    fn files(&self) -> io::Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(SUFFIX) {
                out.push((id.to_owned(), entry.metadata()?.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        // Ids come from operators (CLI, HTTP): only our own shape, never a path.
        let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'-');
        valid.then(|| self.dir.join(format!("{id}{SUFFIX}")))
    }

    /// Stores a refused payload, then drops the oldest entries while over the bound.
    pub fn add(&self, letter: Letter<'_>) -> io::Result<Meta> {
        let time_ms = now_unix_millis();
        let seq = {
            let mut state = self.state.lock();
            state.seq += 1;
            state.seq
        };
        let meta = Meta {
            id: format!("{time_ms:013}-{seq:08}"),
            time_ms,
            exporter: letter.exporter.to_owned(),
            pipeline: letter.pipeline.to_owned(),
            signal: letter.signal,
            tenant: letter.tenant.map(str::to_owned),
            reason: letter.reason.to_owned(),
            message: letter.message.to_owned(),
            items: letter.items,
            bytes: letter.payload.len() as u64,
        };
        let mut content = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        content.push(b'\n');
        content.extend_from_slice(letter.payload);
        let path = self.dir.join(format!("{}{SUFFIX}", meta.id));
        let tmp = self.dir.join(format!(".{}.tmp", meta.id));
        fs::write(&tmp, &content)?;
        fs::rename(&tmp, &path)?;
        metrics::counter!(DEAD_LETTER_ITEMS, "exporter" => meta.exporter.clone(), "reason" => meta.reason.clone())
            .increment(meta.items);
        let mut state = self.state.lock();
        state.bytes += content.len() as u64;
        if state.bytes > self.max_bytes {
            self.shrink(&mut state)?;
        }
        metrics::gauge!(DEAD_LETTER_BYTES).set(state.bytes as f64);
        Ok(meta)
    }

    /// Deletes the oldest entries until the store fits its bound, counting their items.
    fn shrink(&self, state: &mut State) -> io::Result<()> {
        for (id, len) in self.files()? {
            if state.bytes <= self.max_bytes {
                break;
            }
            let items = self.meta(&id).map(|m| m.items).unwrap_or(0);
            if self.unlink(&id)?.is_some() {
                state.bytes = state.bytes.saturating_sub(len);
                metrics::counter!(DEAD_LETTER_DROPPED, "reason" => "max_bytes").increment(items);
                tracing::warn!(
                    id,
                    items,
                    max_bytes = self.max_bytes,
                    "dead-letter store full; dropped its oldest entry"
                );
            }
        }
        Ok(())
    }

    /// Entries, oldest first. Unreadable files are skipped.
    pub fn list(&self) -> io::Result<Vec<Meta>> {
        Ok(self
            .files()?
            .into_iter()
            .filter_map(|(id, _)| self.meta(&id))
            .collect())
    }

    fn meta(&self, id: &str) -> Option<Meta> {
        self.get(id).ok().flatten().map(|(meta, _)| meta)
    }

    /// One entry and its payload; `None` if there is no such entry.
    pub fn get(&self, id: &str) -> io::Result<Option<(Meta, Bytes)>> {
        let Some(path) = self.path(id) else {
            return Ok(None);
        };
        let content = match fs::read(&path) {
            Ok(content) => content,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(newline) = content.iter().position(|&b| b == b'\n') else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no metadata line", path.display()),
            ));
        };
        let meta: Meta = serde_json::from_slice(&content[..newline]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        let payload = Bytes::from(content).slice(newline + 1..);
        Ok(Some((meta, payload)))
    }

    /// Deletes one entry; false if there was none.
    pub fn remove(&self, id: &str) -> io::Result<bool> {
        let Some(len) = self.unlink(id)? else {
            return Ok(false);
        };
        let mut state = self.state.lock();
        state.bytes = state.bytes.saturating_sub(len);
        metrics::gauge!(DEAD_LETTER_BYTES).set(state.bytes as f64);
        Ok(true)
    }

    /// Deletes an entry's file, returning its size; `None` if there was none.
    fn unlink(&self, id: &str) -> io::Result<Option<u64>> {
        let Some(path) = self.path(id) else {
            return Ok(None);
        };
        let len = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes every entry; returns how many.
    pub fn purge(&self) -> io::Result<usize> {
        let mut n = 0;
        for (id, _) in self.files()? {
            if self.remove(&id)? {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: &[u8]) -> Letter<'_> {
        Letter {
            exporter: "exporters.tempo",
            pipeline: "traces",
            signal: Signal::Traces,
            tenant: Some("team-a"),
            reason: "invalid_argument",
            message: "span ids must be 64 bit and not all zero",
            items: 1,
            payload,
        }
    }

    #[test]
    fn add_list_get_remove_purge() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path(), 1 << 20).unwrap();
        let a = store.add(letter(b"first")).unwrap();
        let b = store.add(letter(b"second")).unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed, vec![a.clone(), b.clone()]);
        let (meta, payload) = store.get(&a.id).unwrap().unwrap();
        assert_eq!(meta.tenant.as_deref(), Some("team-a"));
        assert_eq!(meta.message, "span ids must be 64 bit and not all zero");
        assert_eq!(&payload[..], b"first");
        assert!(store.get("../etc/passwd").unwrap().is_none());
        assert!(store.remove(&a.id).unwrap());
        assert!(!store.remove(&a.id).unwrap());
        // Reopening finds what is on disk.
        let reopened = DeadLetterStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(reopened.list().unwrap(), vec![b]);
        assert_eq!(reopened.purge().unwrap(), 1);
        assert!(reopened.list().unwrap().is_empty());
    }

    #[test]
    fn oldest_entries_go_first_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::open(dir.path(), 1000).unwrap();
        let payload = vec![7u8; 300];
        let ids: Vec<String> = (0..5)
            .map(|_| store.add(letter(&payload)).unwrap().id)
            .collect();
        let kept: Vec<String> = store.list().unwrap().into_iter().map(|m| m.id).collect();
        // Each entry is 300 bytes of payload plus its metadata line: the newest that fit stay.
        assert!(!kept.is_empty() && kept.len() < 3, "{kept:?}");
        assert_eq!(kept, ids[ids.len() - kept.len()..]);
        let on_disk: u64 = store.files().unwrap().iter().map(|(_, l)| l).sum();
        assert!(on_disk <= 1000, "{on_disk}");
    }
}

/// `sluice dead-letter`: look at, replay and purge the store of a (stopped or running) Sluice.
pub mod cli {
    use super::{DIR, DeadLetterStore, Meta};
    use std::path::PathBuf;
    use std::process::ExitCode;

    #[derive(clap::Args)]
    pub struct Args {
        /// The `--storage.path` of the Sluice whose store to use.
        #[arg(
            long = "storage.path",
            default_value = "data-sluice",
            env = "SLUICE_STORAGE_PATH"
        )]
        storage_path: PathBuf,
        #[command(subcommand)]
        command: Command,
    }

    #[derive(clap::Subcommand)]
    enum Command {
        /// One line per entry, oldest first: id, time, exporter, signal, items, reason, message.
        List,
        /// An entry's metadata and its payload as OTLP/JSON.
        Show { id: String },
        /// Sends entries (all, or the given ids) to an OTLP/HTTP endpoint, usually this
        /// Sluice's own receiver once the cause is fixed; each one accepted is removed.
        Replay {
            ids: Vec<String>,
            /// OTLP/HTTP base URL; `/v1/<signal>` is appended.
            #[arg(long, default_value = "http://127.0.0.1:4318")]
            endpoint: String,
        },
        /// Deletes entries (all, or the given ids).
        Purge { ids: Vec<String> },
    }

    pub fn run(args: Args) -> ExitCode {
        let dir = args.storage_path.join(DIR);
        let store = match DeadLetterStore::open(&dir, u64::MAX) {
            Ok(store) => store,
            Err(e) => {
                eprintln!(
                    "cannot open the dead-letter store at {}: {e}",
                    dir.display()
                );
                return ExitCode::FAILURE;
            }
        };
        match execute(&store, args.command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        }
    }

    fn selected(store: &DeadLetterStore, ids: &[String]) -> anyhow::Result<Vec<Meta>> {
        let all = store.list()?;
        if ids.is_empty() {
            return Ok(all);
        }
        ids.iter()
            .map(|id| {
                all.iter()
                    .find(|m| &m.id == id)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("no dead-letter entry {id}"))
            })
            .collect()
    }

    fn execute(store: &DeadLetterStore, command: Command) -> anyhow::Result<()> {
        match command {
            Command::List => {
                for m in store.list()? {
                    println!(
                        "{}\t{}\t{}\t{}\t{} {}\t{}\t{}",
                        m.id,
                        m.time_ms,
                        m.exporter,
                        m.signal,
                        m.items,
                        m.signal.unit(),
                        m.reason,
                        m.message
                    );
                }
            }
            Command::Show { id } => {
                let Some((meta, payload)) = store.get(&id)? else {
                    anyhow::bail!("no dead-letter entry {id}");
                };
                println!("{}", serde_json::to_string_pretty(&meta)?);
                match sluice_otlp::protobuf_to_json(meta.signal, &payload) {
                    Ok(json) => println!("{json}"),
                    Err(e) => println!("(payload is not a valid OTLP request: {e})"),
                }
            }
            Command::Purge { ids } => {
                let entries = selected(store, &ids)?;
                for m in &entries {
                    store.remove(&m.id)?;
                }
                println!("purged {} entries", entries.len());
            }
            Command::Replay { ids, endpoint } => {
                let entries = selected(store, &ids)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(replay(store, entries, endpoint.trim_end_matches('/')))?;
            }
        }
        Ok(())
    }

    async fn replay(
        store: &DeadLetterStore,
        entries: Vec<Meta>,
        endpoint: &str,
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let mut failed = 0;
        for meta in entries {
            let Some((meta, payload)) = store.get(&meta.id)? else {
                continue;
            };
            let url = format!("{endpoint}/v1/{}", meta.signal);
            let mut request = client
                .post(&url)
                .header("content-type", "application/x-protobuf")
                .body(payload);
            if let Some(tenant) = &meta.tenant {
                request = request.header("x-scope-orgid", tenant.as_str());
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    let body = response.bytes().await.unwrap_or_default();
                    store.remove(&meta.id)?;
                    let note = if body.is_empty() {
                        String::new()
                    } else {
                        format!(" (response: {})", String::from_utf8_lossy(&body))
                    };
                    println!(
                        "{}: replayed {} {}{note}",
                        meta.id,
                        meta.items,
                        meta.signal.unit()
                    );
                }
                Ok(response) => {
                    failed += 1;
                    let status = response.status();
                    let body = response.bytes().await.unwrap_or_default();
                    eprintln!(
                        "{}: {url} answered {status}: {}",
                        meta.id,
                        String::from_utf8_lossy(&body)
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{}: {url}: {e}", meta.id);
                }
            }
        }
        if failed > 0 {
            anyhow::bail!("{failed} entries were not replayed and stay in the store");
        }
        Ok(())
    }
}
