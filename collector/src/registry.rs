//! The one place component types are known: `type = "..."` → typed config → running component.
//! Adding a receiver or exporter is one line in [`components!`]'s invocation below: its crate
//! provides `TYPE_NAME`, `Config` (with `validate` and [`ComponentConfig`]) and `build`; an
//! exporter also `SIGNALS`. Processors are registered in [`processors!`]; besides per-pipeline
//! stages there are two other shapes, both known only here:
//!
//! * **Shared stages** ([`SharedStage`]): one instance per configured name, shared by every
//!   pipeline that lists it (the watcher: one incident state, HTTP routes on the admin server,
//!   its own telemetry fed back into those pipelines).
//! * **Services** ([`ServiceConfig`]): components with no consumer, each configured by its own
//!   top-level section, started before the receivers (which may connect to them) and stopped
//!   before them (the AWF simulator, `[awf_simulator]`).
//!
//! The topology only sees these shapes, never a component's name.

use crate::config::{ComponentError, parse_listen_addr};
use crate::pipeline::{DriverSettings, LateConsumer, PipelineIngest, Router, run_driver};
use serde::de::DeserializeOwned;
use sluice_core::retry::RetryConfig;
use sluice_core::{ComponentConfig, Exporter, InvalidConfig, Receiver, Signal};
use sluice_spool::SpoolReader;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::task::JoinHandle;

use sluice_core::batch::{self, BatchConfig};
use sluice_processors::{Context, Stage};

/// Deserializes a component body strictly, then runs its semantic checks.
fn typed<T: DeserializeOwned>(
    body: toml::Value,
    validate: impl Fn(&T) -> Result<(), InvalidConfig>,
) -> Result<T, ComponentError> {
    let cfg = T::deserialize(body).map_err(|e| ComponentError::Field(e.message().to_string()))?;
    validate(&cfg).map_err(ComponentError::Invalid)?;
    Ok(cfg)
}

/// Generates the receiver and exporter config enums, one variant per registered component,
/// with every `match` over them.
macro_rules! components {
    (
        receivers { $($rv:ident => $($rc:ident)::+),* $(,)? }
        exporters { $($ev:ident => $($ec:ident)::+),* $(,)? }
    ) => {
        #[derive(Debug, Clone, PartialEq)]
        pub enum ReceiverConfig {
            // Boxed: component configs differ a lot in size.
            $($rv(Box<$($rc)::+::Config>)),*
        }

        impl ReceiverConfig {
            pub const KNOWN: &'static [&'static str] = &[$($($rc)::+::TYPE_NAME),*];

            pub fn parse(ty: &str, body: toml::Value) -> Result<Self, ComponentError> {
                $(if ty == $($rc)::+::TYPE_NAME {
                    return typed(body, $($rc)::+::Config::validate).map(|c| Self::$rv(Box::new(c)));
                })*
                Err(ComponentError::UnknownType { known: Self::KNOWN })
            }

            pub fn type_name(&self) -> &'static str {
                match self { $(Self::$rv(_) => $($rc)::+::TYPE_NAME),* }
            }

            fn settings(&self) -> &dyn ComponentConfig {
                match self { $(Self::$rv(c) => c.as_ref()),* }
            }

            pub fn build(&self, component_id: &str) -> anyhow::Result<Box<dyn Receiver>> {
                Ok(match self {
                    $(Self::$rv(c) => Box::new($($rc)::+::build(c, component_id)?)),*
                })
            }
        }

        #[derive(Debug, Clone, PartialEq)]
        pub enum ExporterConfig {
            $($ev(Box<$($ec)::+::Config>)),*
        }

        impl ExporterConfig {
            pub const KNOWN: &'static [&'static str] = &[$($($ec)::+::TYPE_NAME),*];

            pub fn parse(ty: &str, body: toml::Value) -> Result<Self, ComponentError> {
                $(if ty == $($ec)::+::TYPE_NAME {
                    return typed(body, $($ec)::+::Config::validate).map(|c| Self::$ev(Box::new(c)));
                })*
                Err(ComponentError::UnknownType { known: Self::KNOWN })
            }

            pub fn type_name(&self) -> &'static str {
                match self { $(Self::$ev(_) => $($ec)::+::TYPE_NAME),* }
            }

            pub fn signals(&self) -> &'static [Signal] {
                match self { $(Self::$ev(_) => $($ec)::+::SIGNALS),* }
            }

            fn settings(&self) -> &dyn ComponentConfig {
                match self { $(Self::$ev(c) => c.as_ref()),* }
            }

            /// Builds the exporter and starts its driver on `reader`.
            pub fn start(
                &self,
                reader: SpoolReader,
                settings: DriverSettings,
            ) -> anyhow::Result<JoinHandle<()>> {
                let id = settings.component_id.to_string();
                Ok(match self {
                    $(Self::$ev(c) => spawn_driver($($ec)::+::build(c, &id)?, reader, settings)),*
                })
            }
        }
    };
}

components! {
    receivers {
        Otlp => sluice_receiver_otlp,
        Awf => sluice_receiver_awf,
        Kafka => sluice_receiver_kafka,
        PrometheusScrape => sluice_receiver_prometheus,
        FileLog => sluice_receiver_file_log,
    }
    exporters {
        Otlp => sluice_exporter_otlp::otlp,
        Debug => sluice_exporter_debug,
        RemoteWrite => sluice_exporter_prometheus,
        Loki => sluice_exporter_loki,
        Kafka => sluice_exporter_kafka,
    }
}

fn spawn_driver<E: Exporter>(
    e: E,
    reader: SpoolReader,
    settings: DriverSettings,
) -> JoinHandle<()> {
    tokio::spawn(run_driver(Arc::new(e), reader, settings))
}

impl ReceiverConfig {
    /// Addresses this receiver will listen on, with the config key naming each.
    pub fn listen_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.settings()
            .listen_endpoints()
            .into_iter()
            .filter_map(|(key, e)| parse_listen_addr(e).ok().map(|a| (key.to_string(), a)))
            .collect()
    }
}

impl ExporterConfig {
    /// The retry policy the driver applies to this exporter.
    pub fn retry(&self) -> RetryConfig {
        self.settings().retry()
    }
}

/// An entry of a config's `processors` table. The watcher is a [`SharedStage`] on the ingest
/// path; `batch` is spelled as a processor (as Alloy's `otelcol.processor.batch` is) but is the
/// exporter drivers' batching setting for the pipelines that list it ([`DriverBatching`]).
/// Every other processor comes from `sluice-processors` and is registered in one line of
/// [`processors!`] below: its module provides `TYPE_NAME`, `Config` (with `validate`) and
/// `build`.
///
/// [`DriverBatching`]: ProcessorConfig::DriverBatching
macro_rules! processors {
    ($($pv:ident => $($pc:ident)::+),* $(,)?) => {
        #[derive(Debug, Clone, PartialEq)]
        pub enum ProcessorConfig {
            /// `type = "batch"`: the exporter drivers' batching setting, not a processor:
            /// nothing runs on the ingest path.
            DriverBatching(BatchConfig),
            // Boxed: the watcher's config is much larger than the batch settings.
            Watcher(Box<sluice_watcher::Config>),
            $($pv(Box<$($pc)::+::Config>)),*
        }

        impl ProcessorConfig {
            pub const KNOWN: &'static [&'static str] =
                &[batch::TYPE_NAME, sluice_watcher::TYPE_NAME, $($($pc)::+::TYPE_NAME),*];

            pub fn parse(ty: &str, body: toml::Value) -> Result<Self, ComponentError> {
                $(if ty == $($pc)::+::TYPE_NAME {
                    return typed(body, $($pc)::+::Config::validate).map(|c| Self::$pv(Box::new(c)));
                })*
                match ty {
                    batch::TYPE_NAME => {
                        typed(body, BatchConfig::validate).map(Self::DriverBatching)
                    }
                    sluice_watcher::TYPE_NAME => typed(body, sluice_watcher::Config::validate)
                        .map(|c| Self::Watcher(Box::new(c))),
                    _ => Err(ComponentError::UnknownType { known: Self::KNOWN }),
                }
            }

            pub fn type_name(&self) -> &'static str {
                match self {
                    Self::DriverBatching(_) => batch::TYPE_NAME,
                    Self::Watcher(_) => sluice_watcher::TYPE_NAME,
                    $(Self::$pv(_) => $($pc)::+::TYPE_NAME),*
                }
            }

            /// Builds this processor's stage for one pipeline. `None` for the driver batching
            /// setting and for shared stages (see [`ProcessorConfig::start_shared`]).
            pub fn build(&self, ctx: Context) -> anyhow::Result<Option<Stage>> {
                Ok(match self {
                    Self::DriverBatching(_) | Self::Watcher(_) => None,
                    $(Self::$pv(c) => Some($($pc)::+::build(c, ctx)?)),*
                })
            }
        }
    };
}

processors! {
    Attributes => sluice_processors::attributes,
    Resource => sluice_processors::resource,
    Filter => sluice_processors::filter,
    Redaction => sluice_processors::redaction,
    Transform => sluice_processors::transform,
    MemoryLimiter => sluice_processors::memory_limiter,
    TailSampling => sluice_processors::tail_sampling,
}

impl ProcessorConfig {
    /// The exporter drivers' batching, when this entry is `type = "batch"`.
    pub fn driver_batching(&self) -> Option<&BatchConfig> {
        match self {
            Self::DriverBatching(b) => Some(b),
            _ => None,
        }
    }

    /// The watcher's settings, when this is the watcher stage.
    pub fn watcher(&self) -> Option<&sluice_watcher::Config> {
        match self {
            Self::Watcher(w) => Some(w),
            _ => None,
        }
    }

    /// Starts the one instance shared by every pipeline that lists this processor, keeping its
    /// state under `storage/<type>/<name>`. `None` for processors built per pipeline.
    pub async fn start_shared(
        &self,
        name: &str,
        storage: &Path,
    ) -> anyhow::Result<Option<SharedStage>> {
        let Self::Watcher(config) = self else {
            return Ok(None);
        };
        let component_id = format!("processors.{name}");
        let dir = storage.join(sluice_watcher::TYPE_NAME).join(name);
        let emit = Arc::new(LateConsumer::default());
        let watcher =
            sluice_watcher::Watcher::start(config, &component_id, &dir, Some(emit.clone()))
                .await
                .map_err(|e| anyhow::anyhow!("{component_id}: {e:#}"))?;
        Ok(Some(SharedStage {
            watcher,
            emit,
            feeds: Vec::new(),
        }))
    }
}

/// A processor started once and shared by every pipeline that lists it. It may emit telemetry
/// of its own, routed into those pipelines once they exist ([`SharedStage::feed`],
/// [`SharedStage::connect`]).
pub struct SharedStage {
    watcher: sluice_watcher::Watcher,
    emit: Arc<LateConsumer>,
    feeds: Vec<(Signal, Arc<PipelineIngest>)>,
}

impl SharedStage {
    /// The stage to put in a pipeline's processor chain.
    pub fn stage(&self) -> Stage {
        Stage::Item(self.watcher.processor())
    }

    /// Routes this stage's own telemetry of `signals` into `pipeline`.
    pub fn feed(&mut self, signals: &[Signal], pipeline: &Arc<PipelineIngest>) {
        self.feeds
            .extend(signals.iter().map(|s| (*s, pipeline.clone())));
    }

    /// Starts delivering this stage's own telemetry to the pipelines it was fed into.
    pub fn connect(&mut self) {
        let feeds = std::mem::take(&mut self.feeds);
        self.emit.set(Arc::new(Router::new(feeds)));
    }

    /// HTTP routes this stage serves on the admin server.
    pub fn http_routes(&self) -> axum::Router {
        self.watcher.router()
    }

    pub async fn stop(&self) {
        self.watcher.stop().await;
    }
}

/// A top-level config section that runs a service: a component with no consumer.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceConfig {
    /// `[awf_simulator]`: the AWF simulator inside this process (demos, `configs/dev.toml`).
    AwfSimulator(Box<crate::awf_sim::SimConfig>),
}

impl ServiceConfig {
    /// The top-level sections that configure a service.
    pub const SECTIONS: &'static [&'static str] = &["awf_simulator"];

    /// Parses the section named `section` (one of [`ServiceConfig::SECTIONS`]).
    pub fn parse(section: &str, body: toml::Value) -> Result<Self, ComponentError> {
        match section {
            "awf_simulator" => typed(body, crate::awf_sim::SimConfig::validate)
                .map(|c| Self::AwfSimulator(Box::new(c))),
            _ => Err(ComponentError::UnknownType {
                known: Self::SECTIONS,
            }),
        }
    }

    /// Addresses this service will listen on, with the key naming each (below its section).
    pub fn listen_addrs(&self) -> Vec<(String, SocketAddr)> {
        match self {
            Self::AwfSimulator(c) => vec![("listen".to_owned(), c.listen)],
        }
    }

    /// One line for the start-up banner.
    pub fn describe(&self) -> String {
        match self {
            Self::AwfSimulator(c) => {
                format!("AWF simulator http://{}/ (demo executions)", c.listen)
            }
        }
    }

    pub async fn start(&self) -> anyhow::Result<RunningService> {
        match self {
            Self::AwfSimulator(c) => {
                let sim = crate::awf_sim::start_simulator(c.as_ref().clone()).await?;
                tracing::info!(url = %sim.base_url(), "AWF simulator running");
                Ok(RunningService::AwfSimulator(sim))
            }
        }
    }
}

/// A started service.
pub enum RunningService {
    AwfSimulator(crate::awf_sim::SimHandle),
}

impl RunningService {
    pub async fn stop(self) -> anyhow::Result<()> {
        match self {
            Self::AwfSimulator(sim) => sim.stop().await,
        }
    }
}
