//! Debug exporter (`type = "debug"`): logs what passes and optionally appends it as OTLP/JSON
//! lines to a file. Needs no backend, which makes it the exporter of the embedded default
//! config and a handy tap when checking what a pipeline emits.

use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use serde::Deserialize;
use sluice_core::InvalidConfig;
use sluice_core::retry::RetryConfig;
use sluice_core::telemetry::exporter_dropped;
use sluice_core::{Batch, Exporter, Item, SendOutcome, Signal};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

pub const TYPE_NAME: &str = "debug";
pub const SIGNALS: &[Signal] = &Signal::ALL;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    /// One log line per batch (signal, items, payloads, bytes) at debug level. The default.
    #[default]
    Basic,
    /// One line per batch at info level, and every item as OTLP/JSON.
    Detailed,
}

/// Config of the debug exporter.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `"basic"` (default) or `"detailed"`.
    #[serde(default)]
    pub verbosity: Verbosity,
    /// File to append one OTLP/JSON line per item to (parent directories are created).
    /// Unset: nothing is written.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Retry policy (used when the file cannot be written); applied by the pipeline.
    #[serde(default)]
    pub retry: RetryConfig,
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if let Some(path) = &self.path {
            if path.as_os_str().is_empty() {
                return Err(InvalidConfig::new("path", "must not be empty"));
            }
            if path.is_dir() {
                return Err(InvalidConfig::new(
                    "path",
                    format!("{} is a directory", path.display()),
                ));
            }
        }
        self.retry.validate().map_err(|e| e.under("retry"))
    }
}

/// One batch, ready to print.
#[derive(Debug, Clone)]
pub struct DebugRequest {
    pub signal: Signal,
    pub items: u64,
    pub payloads: usize,
    pub bytes: usize,
    /// OTLP/JSON of each payload, when a file or detailed logging needs it.
    pub json_lines: Vec<String>,
}

pub struct DebugExporter {
    component_id: Arc<str>,
    verbosity: Verbosity,
    path: Option<PathBuf>,
    file: tokio::sync::Mutex<FileState>,
}

#[derive(Default)]
struct FileState {
    file: Option<tokio::fs::File>,
    /// A previous write failed part-way, so the file may end inside a line.
    torn: bool,
}

pub fn build(config: &Config, component_id: &str) -> anyhow::Result<DebugExporter> {
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{component_id}: {e}"))?;
    Ok(DebugExporter {
        component_id: component_id.into(),
        verbosity: config.verbosity,
        path: config.path.clone(),
        file: tokio::sync::Mutex::new(FileState::default()),
    })
}

/// Why an item's payload cannot be shown as OTLP/JSON.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{signal} payload cannot be rendered: {source}")]
    Decode {
        signal: Signal,
        source: prost::DecodeError,
    },
    #[error("{signal} payload cannot be rendered: {source}")]
    Json {
        signal: Signal,
        source: serde_json::Error,
    },
}

/// Decodes an item's payload and renders it as one line of OTLP/JSON.
pub fn item_to_json(item: &Item) -> Result<String, RenderError> {
    fn render<M: Message + Default + serde::Serialize>(item: &Item) -> Result<String, RenderError> {
        let signal = item.signal;
        let message = M::decode(&item.payload[..])
            .map_err(|source| RenderError::Decode { signal, source })?;
        serde_json::to_string(&message).map_err(|source| RenderError::Json { signal, source })
    }
    match item.signal {
        Signal::Traces => render::<ExportTraceServiceRequest>(item),
        Signal::Metrics => render::<ExportMetricsServiceRequest>(item),
        Signal::Logs => render::<ExportLogsServiceRequest>(item),
    }
}

impl DebugExporter {
    fn needs_json(&self) -> bool {
        self.path.is_some() || self.verbosity == Verbosity::Detailed
    }

    async fn append(&self, path: &std::path::Path, lines: &[String]) -> std::io::Result<()> {
        let mut state = self.file.lock().await;
        if state.file.is_none() {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir).await?;
            }
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await?;
            state.file = Some(file);
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 1);
        if state.torn {
            // End the torn line so that the next ones stay parseable.
            buf.push(b'\n');
        }
        for line in lines {
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        let result = match state.file.as_mut() {
            Some(file) => match file.write_all(&buf).await {
                Ok(()) => file.flush().await,
                Err(e) => Err(e),
            },
            None => Ok(()),
        };
        match &result {
            Ok(()) => state.torn = false,
            Err(_) => {
                // Reopen next time: the file may have been removed or the disk replaced.
                state.file = None;
                state.torn = true;
            }
        }
        result
    }
}

impl Exporter for DebugExporter {
    type Request = DebugRequest;

    fn build_requests(&self, batch: &Batch) -> Vec<DebugRequest> {
        let mut json_lines = Vec::new();
        let mut items = 0u64;
        let mut payloads = 0usize;
        let mut bytes = 0usize;
        for item in &batch.items {
            if self.needs_json() {
                match item_to_json(item) {
                    Ok(line) => json_lines.push(line),
                    Err(e) => {
                        tracing::warn!(component_id = %self.component_id, "{e}");
                        exporter_dropped(
                            &self.component_id,
                            item.signal,
                            "decode_error",
                            u64::from(item.count),
                        );
                        continue;
                    }
                }
            }
            items += u64::from(item.count);
            payloads += 1;
            bytes += item.payload.len();
        }
        if payloads == 0 {
            return Vec::new();
        }
        vec![DebugRequest {
            signal: batch.signal,
            items,
            payloads,
            bytes,
            json_lines,
        }]
    }

    fn request_items(&self, request: &DebugRequest) -> u64 {
        request.items
    }

    async fn send(&self, request: &DebugRequest) -> SendOutcome {
        if let Some(path) = &self.path
            && let Err(e) = self.append(path, &request.json_lines).await
        {
            // Retryable: the pipeline keeps the data until the file can be written.
            return SendOutcome::Retryable {
                reason: "file_write",
                retry_after: None,
                message: format!("cannot append to {}: {e}", path.display()),
            };
        }
        // One line per batch floods a first run; `sluice run` prints a summary every 10 s, so
        // the per-batch line is for `detailed` or `--log.level=debug` (README, "First run").
        if self.verbosity == Verbosity::Detailed {
            tracing::info!(
                component_id = %self.component_id,
                signal = %request.signal,
                items = request.items,
                payloads = request.payloads,
                bytes = request.bytes,
                "debug exporter: {} {}",
                request.items,
                request.signal.unit()
            );
            for line in &request.json_lines {
                tracing::info!(component_id = %self.component_id, signal = %request.signal, "{line}");
            }
        } else {
            tracing::debug!(
                component_id = %self.component_id,
                signal = %request.signal,
                items = request.items,
                payloads = request.payloads,
                bytes = request.bytes,
                "debug exporter: {} {}",
                request.items,
                request.signal.unit()
            );
        }
        SendOutcome::Sent
    }
}

impl sluice_core::ComponentConfig for Config {
    fn retry(&self) -> sluice_core::retry::RetryConfig {
        self.retry.clone()
    }
}
