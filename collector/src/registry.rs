//! The one place component types are known: `type = "..."` → typed config → running component.
//! Adding a component means adding one arm to each enum here.

use crate::config::{ComponentError, parse_listen_addr};
use crate::pipeline::{DriverSettings, run_driver};
use serde::de::DeserializeOwned;
use sluice_core::retry::RetryConfig;
use sluice_core::{Exporter, Receiver, Signal};
use sluice_spool::SpoolReader;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;

use sluice_core::batch::{self, BatchConfig};
use sluice_exporter_debug as debug;
use sluice_exporter_loki as loki;
use sluice_exporter_otlp::otlp as otlp_exporter;
use sluice_exporter_prometheus as remote_write;
use sluice_receiver_awf as awf;
use sluice_receiver_otlp as otlp_receiver;

/// Deserializes a component body strictly, then runs its semantic checks.
fn typed<T: DeserializeOwned>(
    body: toml::Value,
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, ComponentError> {
    let cfg = T::deserialize(body).map_err(|e| ComponentError::Field(e.message().to_string()))?;
    validate(&cfg).map_err(|reason| {
        // Messages conventionally start with the offending key: "max_bytes must ...".
        let field = reason.split_whitespace().next().filter(|w| {
            w.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        });
        ComponentError::Invalid {
            field: field.map(str::to_owned),
            reason,
        }
    })?;
    Ok(cfg)
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReceiverConfig {
    Otlp(otlp_receiver::Config),
    // Boxed: the AWF receiver's config is several times larger than the others.
    Awf(Box<awf::Config>),
}

impl ReceiverConfig {
    pub const KNOWN: &'static [&'static str] = &[otlp_receiver::TYPE_NAME, awf::TYPE_NAME];

    pub fn parse(ty: &str, body: toml::Value) -> Result<Self, ComponentError> {
        match ty {
            otlp_receiver::TYPE_NAME => {
                typed(body, otlp_receiver::Config::validate).map(Self::Otlp)
            }
            awf::TYPE_NAME => typed(body, awf::Config::validate).map(|c| Self::Awf(Box::new(c))),
            _ => Err(ComponentError::UnknownType { known: Self::KNOWN }),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Otlp(_) => otlp_receiver::TYPE_NAME,
            Self::Awf(_) => awf::TYPE_NAME,
        }
    }

    /// Addresses this receiver will listen on, with the config field naming each.
    pub fn listen_addrs(&self) -> Vec<(String, SocketAddr)> {
        let endpoints: Vec<(&str, &str)> = match self {
            Self::Otlp(c) => {
                let mut v = Vec::new();
                if let Some(g) = &c.grpc {
                    v.push(("grpc.endpoint", g.endpoint.as_str()));
                }
                if let Some(h) = &c.http {
                    v.push(("http.endpoint", h.endpoint.as_str()));
                }
                v
            }
            Self::Awf(c) => c
                .push
                .iter()
                .map(|p| ("push.endpoint", p.endpoint.as_str()))
                .collect(),
        };
        endpoints
            .into_iter()
            .filter_map(|(f, e)| parse_listen_addr(e).ok().map(|a| (f.to_string(), a)))
            .collect()
    }

    pub fn build(&self, component_id: &str) -> anyhow::Result<Box<dyn Receiver>> {
        Ok(match self {
            Self::Otlp(c) => Box::new(otlp_receiver::build(c, component_id)?),
            Self::Awf(c) => Box::new(awf::build(c, component_id)?),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProcessorConfig {
    Batch(BatchConfig),
    // Boxed: the watcher's config is much larger than the batch settings.
    Watcher(Box<sluice_watcher::Config>),
}

impl ProcessorConfig {
    pub const KNOWN: &'static [&'static str] = &[batch::TYPE_NAME, sluice_watcher::TYPE_NAME];

    pub fn parse(ty: &str, body: toml::Value) -> Result<Self, ComponentError> {
        match ty {
            batch::TYPE_NAME => typed(body, BatchConfig::validate).map(Self::Batch),
            sluice_watcher::TYPE_NAME => {
                typed(body, sluice_watcher::Config::validate).map(|c| Self::Watcher(Box::new(c)))
            }
            _ => Err(ComponentError::UnknownType { known: Self::KNOWN }),
        }
    }

    /// Batch settings, when this is the pipeline's batch stage.
    pub fn batch_settings(&self) -> Option<&BatchConfig> {
        match self {
            Self::Batch(b) => Some(b),
            Self::Watcher(_) => None,
        }
    }

    /// The watcher's settings, when this is the watcher stage.
    pub fn watcher(&self) -> Option<&sluice_watcher::Config> {
        match self {
            Self::Watcher(w) => Some(w),
            Self::Batch(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExporterConfig {
    Otlp(otlp_exporter::Config),
    Debug(debug::Config),
    RemoteWrite(remote_write::Config),
    Loki(loki::Config),
}

impl ExporterConfig {
    pub const KNOWN: &'static [&'static str] = &[
        otlp_exporter::TYPE_NAME,
        debug::TYPE_NAME,
        remote_write::TYPE_NAME,
        loki::TYPE_NAME,
    ];

    pub fn parse(ty: &str, body: toml::Value) -> Result<Self, ComponentError> {
        match ty {
            otlp_exporter::TYPE_NAME => {
                typed(body, otlp_exporter::Config::validate).map(Self::Otlp)
            }
            debug::TYPE_NAME => typed(body, debug::Config::validate).map(Self::Debug),
            remote_write::TYPE_NAME => {
                typed(body, remote_write::Config::validate).map(Self::RemoteWrite)
            }
            loki::TYPE_NAME => typed(body, loki::Config::validate).map(Self::Loki),
            _ => Err(ComponentError::UnknownType { known: Self::KNOWN }),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Otlp(_) => otlp_exporter::TYPE_NAME,
            Self::Debug(_) => debug::TYPE_NAME,
            Self::RemoteWrite(_) => remote_write::TYPE_NAME,
            Self::Loki(_) => loki::TYPE_NAME,
        }
    }

    pub fn signals(&self) -> &'static [Signal] {
        match self {
            Self::Otlp(_) => otlp_exporter::SIGNALS,
            Self::Debug(_) => debug::SIGNALS,
            Self::RemoteWrite(_) => remote_write::SIGNALS,
            Self::Loki(_) => loki::SIGNALS,
        }
    }

    pub fn retry(&self) -> RetryConfig {
        match self {
            Self::Otlp(c) => c.retry.clone(),
            Self::Debug(_) => RetryConfig::default(),
            Self::RemoteWrite(c) => c.retry.clone(),
            Self::Loki(c) => c.retry.clone(),
        }
    }

    /// Builds the exporter and starts its driver on `reader`.
    pub fn start(
        &self,
        reader: SpoolReader,
        settings: DriverSettings,
    ) -> anyhow::Result<JoinHandle<()>> {
        fn spawn<E: Exporter>(
            e: E,
            reader: SpoolReader,
            settings: DriverSettings,
        ) -> JoinHandle<()> {
            tokio::spawn(run_driver(Arc::new(e), reader, settings))
        }
        let id = settings.component_id.to_string();
        Ok(match self {
            Self::Otlp(c) => spawn(otlp_exporter::build(c, &id)?, reader, settings),
            Self::Debug(c) => spawn(debug::build(c, &id)?, reader, settings),
            Self::RemoteWrite(c) => spawn(remote_write::build(c, &id)?, reader, settings),
            Self::Loki(c) => spawn(loki::build(c, &id)?, reader, settings),
        })
    }
}
