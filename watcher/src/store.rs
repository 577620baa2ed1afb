//! Durable state: incidents and approvals in an append-only journal (`journal.jsonl`), and the
//! human-readable audit log (`audit.jsonl`).
//!
//! Every change appends the whole record (last one per id wins) and is `fdatasync`ed before
//! anyone is told it happened (a webhook's 2xx, an approval's answer). At start the journal is
//! replayed — a torn last line from a crash is skipped — and rewritten with only the live
//! records, so it does not grow without bound.

use crate::alert::{Alert, AlertSource};
use crate::finding::Finding;
use crate::remediation_catalogue::RenderedAction;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Queued,
    Investigating,
    AwaitingApproval,
    Acting,
    Verifying,
    Closed,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Investigating => "investigating",
            Stage::AwaitingApproval => "awaiting_approval",
            Stage::Acting => "acting",
            Stage::Verifying => "verifying",
            Stage::Closed => "closed",
        }
    }
}

/// How an incident ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An action ran and the signal cleared.
    Recovered,
    /// An action ran but the signal did not clear in time.
    NotRecovered,
    /// An action ran; there is nothing to verify (notify, scale).
    Done,
    /// The action itself failed (and any escalation did not recover it).
    ActionFailed,
    /// No rule matched, or the rule has no action that applies.
    NoAction,
    /// A parameter value was not allowed (possible injection).
    Refused,
    Rejected,
    Expired,
    /// The alert resolved before anything ran.
    Cancelled,
    RateLimited,
    KillSwitch,
    DryRun,
    /// Needed approval but no approver is configured.
    NoApprover,
    /// The watcher stopped while the action ran; its effect is unknown and it is not repeated.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Recovered => "recovered",
            Outcome::NotRecovered => "not_recovered",
            Outcome::Done => "done",
            Outcome::ActionFailed => "action_failed",
            Outcome::NoAction => "no_action",
            Outcome::Refused => "refused",
            Outcome::Rejected => "rejected",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
            Outcome::RateLimited => "rate_limited",
            Outcome::KillSwitch => "kill_switch",
            Outcome::DryRun => "dry_run",
            Outcome::NoApprover => "no_approver",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    pub script: String,
    pub param: String,
    pub source: String,
    /// The refused value, truncated.
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub rule: Option<String>,
    /// Candidates in the order used (after any LLM ranking).
    pub candidates: Vec<String>,
    /// `rule` or `llm`.
    pub ranked_by: String,
    pub chosen: Option<String>,
    /// The rendered action (full; the API and audit show it redacted).
    pub action: Option<RenderedAction>,
    pub requires_approval: bool,
    pub escalate: Option<String>,
    pub verify_query: Option<String>,
    pub reason: String,
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub script: String,
    pub action: Option<RenderedAction>,
    pub started_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    /// `ok`, `failed`, `timeout`, `dry_run`; `None` while running.
    pub outcome: Option<String>,
    pub status: Option<u16>,
    pub exit_code: Option<i32>,
    pub response: String,
    /// The response parsed as JSON, when it was.
    pub result: Option<serde_json::Value>,
    pub approved_by: Option<String>,
    pub escalation: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// `promql`, `execution` or `none`.
    pub method: String,
    pub query: String,
    /// `None`: could not tell.
    pub recovered: Option<bool>,
    pub checks: u32,
    pub detail: String,
    pub finished_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub key: String,
    pub source: AlertSource,
    pub alert: Alert,
    pub received_at_ms: i64,
    pub last_seen_ms: i64,
    pub repeats: u64,
    pub stage: Stage,
    pub outcome: Option<Outcome>,
    pub resolved_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub finding: Option<Finding>,
    pub decision: Option<Decision>,
    pub approval_id: Option<String>,
    pub actions: Vec<ActionRecord>,
    pub verification: Option<Verification>,
    /// True when the remediation ran without a human approving it.
    pub autonomous: Option<bool>,
    /// While an escalation runs: the outcome of the first action, which the incident keeps.
    #[serde(default)]
    pub escalated_from: Option<Outcome>,
}

impl Incident {
    pub fn is_closed(&self) -> bool {
        self.stage == Stage::Closed
    }

    /// The incident as the API shows it (action header values hidden).
    pub fn redacted(&self) -> Incident {
        let mut i = self.clone();
        if let Some(d) = &mut i.decision
            && let Some(a) = &mut d.action
        {
            *a = a.redacted();
        }
        for r in &mut i.actions {
            if let Some(a) = &mut r.action {
                *a = a.redacted();
            }
        }
        i
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    Pending,
    Approved,
    Rejected,
    Expired,
    /// The alert resolved, or the incident closed otherwise, before a decision.
    Cancelled,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
            ApprovalState::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub incident_id: String,
    pub script: String,
    pub action: RenderedAction,
    /// Alert, hypothesis and action in one line for humans.
    pub summary: String,
    pub requested_at_ms: i64,
    pub expires_at_ms: i64,
    pub state: ApprovalState,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<i64>,
    pub reason: Option<String>,
    pub escalation: bool,
}

impl Approval {
    pub fn redacted(&self) -> Approval {
        let mut a = self.clone();
        a.action = a.action.redacted();
        a
    }
}

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Record {
    Incident(Box<Incident>),
    Approval(Box<Approval>),
    KillSwitch {
        engaged: bool,
        by: String,
        at_ms: i64,
    },
}

/// What replaying the journal produced.
#[derive(Debug, Default)]
pub struct Replayed {
    pub incidents: HashMap<String, Incident>,
    pub approvals: HashMap<String, Approval>,
    pub kill_switch: Option<(bool, String, i64)>,
    pub skipped_lines: usize,
}

/// An append-only JSONL file written with `fdatasync`.
pub struct AppendFile {
    path: PathBuf,
    file: parking_lot::Mutex<std::fs::File>,
}

impl AppendFile {
    pub fn open(path: &Path) -> std::io::Result<AppendFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AppendFile {
            path: path.to_owned(),
            file: parking_lot::Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the lines and syncs, on a blocking thread.
    pub async fn append(self: &Arc<Self>, lines: Vec<String>) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = String::new();
            for l in lines {
                buf.push_str(&l);
                buf.push('\n');
            }
            let mut f = me.file.lock();
            f.write_all(buf.as_bytes())?;
            f.sync_data()
        })
        .await
        .map_err(|e| std::io::Error::other(format!("journal writer: {e}")))?
    }
}

pub struct Journal {
    file: Arc<AppendFile>,
    /// Lines appended since the last compaction.
    appended: std::sync::atomic::AtomicU64,
}

impl Journal {
    /// Replays `dir/journal.jsonl`, rewrites it with the live records (closed incidents and
    /// decided approvals older than `ttl_ms` are dropped), and opens it for appending.
    pub fn open(dir: &Path, now_ms: i64, ttl_ms: i64) -> std::io::Result<(Journal, Replayed)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("journal.jsonl");
        let mut r = Replayed::default();
        if path.exists() {
            let f = std::fs::File::open(&path)?;
            for line in std::io::BufReader::new(f).split(b'\n') {
                let line = line?;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match serde_json::from_slice::<Record>(&line) {
                    Ok(Record::Incident(i)) => {
                        r.incidents.insert(i.id.clone(), *i);
                    }
                    Ok(Record::Approval(a)) => {
                        r.approvals.insert(a.id.clone(), *a);
                    }
                    Ok(Record::KillSwitch { engaged, by, at_ms }) => {
                        r.kill_switch = Some((engaged, by, at_ms));
                    }
                    Err(_) => r.skipped_lines += 1,
                }
            }
        }
        let old = |t: Option<i64>| t.is_some_and(|t| t.saturating_add(ttl_ms) < now_ms);
        r.incidents
            .retain(|_, i| !(i.is_closed() && old(i.closed_at_ms)));
        r.approvals.retain(|_, a| {
            a.state == ApprovalState::Pending || !old(a.decided_at_ms.or(Some(a.expires_at_ms)))
        });
        // Compact: write the live records to a new file and swap it in atomically.
        let tmp = dir.join("journal.jsonl.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            let mut buf = Vec::new();
            let mut incidents: Vec<&Incident> = r.incidents.values().collect();
            incidents.sort_by_key(|i| i.received_at_ms);
            for i in incidents {
                serde_json::to_writer(&mut buf, &Record::Incident(Box::new(i.clone())))
                    .map_err(std::io::Error::other)?;
                buf.push(b'\n');
            }
            for a in r.approvals.values() {
                serde_json::to_writer(&mut buf, &Record::Approval(Box::new(a.clone())))
                    .map_err(std::io::Error::other)?;
                buf.push(b'\n');
            }
            if let Some((engaged, by, at_ms)) = &r.kill_switch {
                serde_json::to_writer(
                    &mut buf,
                    &Record::KillSwitch {
                        engaged: *engaged,
                        by: by.clone(),
                        at_ms: *at_ms,
                    },
                )
                .map_err(std::io::Error::other)?;
                buf.push(b'\n');
            }
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok((
            Journal {
                file: Arc::new(AppendFile::open(&path)?),
                appended: Default::default(),
            },
            r,
        ))
    }

    pub async fn write(&self, records: &[Record]) -> std::io::Result<()> {
        let mut lines = Vec::with_capacity(records.len());
        for r in records {
            lines.push(serde_json::to_string(r).map_err(std::io::Error::other)?);
        }
        self.appended
            .fetch_add(lines.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.file.append(lines).await
    }

    pub fn appended_since_compaction(&self) -> u64 {
        self.appended.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Rewrites the journal with `snapshot()` (taken while appends wait), atomically.
    /// Blocking: call from a blocking thread.
    pub fn compact_blocking(&self, snapshot: impl FnOnce() -> Vec<Record>) -> std::io::Result<()> {
        let mut f = self.file.file.lock();
        let records = snapshot();
        let path = self.file.path.clone();
        let tmp = path.with_extension("jsonl.tmp");
        let mut buf = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        {
            let mut t = std::fs::File::create(&tmp)?;
            t.write_all(&buf)?;
            t.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        *f = std::fs::OpenOptions::new().append(true).open(&path)?;
        self.appended.store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// The audit log: one JSON object per line, never rewritten.
pub struct Audit {
    file: Arc<AppendFile>,
}

impl Audit {
    pub fn open(dir: &Path) -> std::io::Result<Audit> {
        std::fs::create_dir_all(dir)?;
        Ok(Audit {
            file: Arc::new(AppendFile::open(&dir.join("audit.jsonl"))?),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Appends `{ts, kind, incident_id?, …detail}`; a failure is logged and counted, never
    /// fatal (the journal is the source of truth).
    pub async fn log(&self, kind: &str, incident_id: Option<&str>, detail: serde_json::Value) {
        let mut obj = serde_json::Map::new();
        obj.insert(
            "ts".into(),
            crate::alert::format_rfc3339_ms(crate::alert::now_ms()).into(),
        );
        obj.insert("kind".into(), kind.into());
        if let Some(id) = incident_id {
            obj.insert("incident_id".into(), id.into());
        }
        if let serde_json::Value::Object(d) = detail {
            obj.extend(d);
        } else if !detail.is_null() {
            obj.insert("detail".into(), detail);
        }
        let line = serde_json::Value::Object(obj).to_string();
        if let Err(e) = self.file.append(vec![line]).await {
            metrics::counter!("sluice_watcher_audit_errors_total").increment(1);
            tracing::error!(error = %e, "watcher: cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(id: &str, stage: Stage, closed_at: Option<i64>) -> Incident {
        Incident {
            id: id.into(),
            key: format!("k-{id}"),
            source: AlertSource::Grafana,
            alert: serde_json::from_str("{}").unwrap(),
            received_at_ms: 1,
            last_seen_ms: 1,
            repeats: 0,
            stage,
            outcome: None,
            resolved_at_ms: None,
            closed_at_ms: closed_at,
            finding: None,
            decision: None,
            approval_id: None,
            actions: vec![],
            verification: None,
            autonomous: None,
            escalated_from: None,
        }
    }

    #[tokio::test]
    async fn replay_last_wins_skips_torn_lines_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let (j, r) = Journal::open(dir.path(), 1000, 100).unwrap();
        assert!(r.incidents.is_empty());
        j.write(&[
            Record::Incident(Box::new(incident("a", Stage::Queued, None))),
            Record::Incident(Box::new(incident("b", Stage::Closed, Some(10)))),
            Record::Incident(Box::new(incident("a", Stage::Investigating, None))),
        ])
        .await
        .unwrap();
        drop(j);
        // A crash mid-write leaves a torn line.
        let p = dir.path().join("journal.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"op\":\"incident\",\"id\":").unwrap();
        let (_j, r) = Journal::open(dir.path(), 1000, 100).unwrap();
        assert_eq!(r.skipped_lines, 1);
        assert_eq!(r.incidents["a"].stage, Stage::Investigating);
        // b closed at 10 with ttl 100 at now 1000: forgotten.
        assert!(!r.incidents.contains_key("b"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[tokio::test]
    async fn compaction_while_running_keeps_appending_to_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(dir.path(), 0, 100).unwrap();
        for _ in 0..5 {
            j.write(&[Record::Incident(Box::new(incident(
                "a",
                Stage::Queued,
                None,
            )))])
            .await
            .unwrap();
        }
        assert_eq!(j.appended_since_compaction(), 5);
        j.compact_blocking(|| {
            vec![Record::Incident(Box::new(incident(
                "a",
                Stage::Acting,
                None,
            )))]
        })
        .unwrap();
        assert_eq!(j.appended_since_compaction(), 0);
        j.write(&[Record::Incident(Box::new(incident(
            "b",
            Stage::Queued,
            None,
        )))])
        .await
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        drop(j);
        let (_, r) = Journal::open(dir.path(), 0, 100).unwrap();
        assert_eq!(r.incidents["a"].stage, Stage::Acting);
        assert!(r.incidents.contains_key("b"));
    }
}
