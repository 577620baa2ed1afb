//! The component graph: where each component's data goes (`Target`s), what each component is
//! (`Node`), and the routes from a receiver through processors to exporters.

use super::file_logs::{PathTarget, Stages};
use super::reader::Reader;
use super::{Mapper, Origin, SIGNALS};
use crate::Error;
use crate::eval::Str;

#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) component: String,
    pub(super) export: String,
    pub(super) pos: usize,
}

#[derive(Default, Debug, Clone)]
pub(super) struct Outputs {
    pub(super) by_signal: [Vec<Target>; 3],
    /// Position of each signal's attribute, for pipeline origins.
    pub(super) pos: [usize; 3],
    pub(super) key: String,
}

pub(super) enum Node {
    Receiver {
        name: String,
        outputs: Outputs,
    },
    /// `prometheus.scrape`: Prometheus data, forwarded to `prometheus.remote_write` only.
    PromReceiver {
        name: String,
        forward: Vec<Target>,
        pos: usize,
        key: String,
    },
    Batch {
        name: String,
        outputs: Outputs,
    },
    /// A processor that runs in line before the spool (attributes, filter, ...).
    Processor {
        name: String,
        outputs: Outputs,
    },
    Exporter {
        name: String,
    },
    PromConverter {
        forward: Vec<Target>,
    },
    LokiConverter {
        forward: Vec<Target>,
    },
    RemoteWrite {
        exporters: Vec<usize>,
    },
    LokiWrite {
        exporters: Vec<usize>,
    },
    Auth {
        header: Str,
    },
    /// `local.file_match`: file targets for `loki.source.file`, no data of its own.
    FileMatch {
        targets: Vec<PathTarget>,
        /// `sync_period` as TOML, for the receivers' `scan_interval`.
        sync_period: Option<(String, Origin)>,
    },
    /// `loki.source.file`: its `file_log` receivers, forwarding to `loki.write` (or one
    /// `loki.process`).
    FileSource {
        receivers: Vec<String>,
        forward: Vec<Target>,
        pos: usize,
        key: String,
    },
    /// `loki.process`: its stages are folded into the file sources that feed it.
    LokiProcess {
        forward: Vec<Target>,
        stages: Stages,
    },
}

impl Node {
    /// The export other components may reference, and what it is.
    pub(super) fn export(&self) -> (&'static str, &'static str) {
        match self {
            Node::Receiver { .. } => ("", "an OpenTelemetry receiver (it has no input)"),
            Node::PromReceiver { .. } => ("", "a Prometheus scrape component (it has no input)"),
            Node::Batch { .. } | Node::Processor { .. } => ("input", "an OpenTelemetry processor"),
            Node::Exporter { .. } => ("input", "an OpenTelemetry exporter"),
            Node::PromConverter { .. } => ("input", "an OpenTelemetry-to-Prometheus exporter"),
            Node::LokiConverter { .. } => ("input", "an OpenTelemetry-to-Loki exporter"),
            Node::RemoteWrite { .. } => ("receiver", "a Prometheus component"),
            Node::LokiWrite { .. } => ("receiver", "a Loki component"),
            Node::Auth { .. } => ("handler", "an authentication extension"),
            Node::FileMatch { .. } => ("targets", "a file discovery component"),
            Node::FileSource { .. } => ("", "a log file source (it has no input)"),
            Node::LokiProcess { .. } => ("receiver", "a Loki processing component"),
        }
    }
}

impl Mapper<'_> {
    pub(super) fn outputs(&self, r: &Reader) -> Result<Outputs, Error> {
        let Some(out) = r.block("output", &SIGNALS, &[])? else {
            return Err(Error::at(
                r.b.pos,
                format!("{}.output", r.key),
                format!(
                    "{} needs an `output {{ }}` block saying where its data goes (traces/metrics/logs = [...])",
                    r.what
                ),
            ));
        };
        let mut o = Outputs {
            key: out.key.clone(),
            pos: [out.b.pos; 3],
            ..Default::default()
        };
        for (i, s) in SIGNALS.iter().enumerate() {
            if let Some(a) = out.attr(s) {
                o.by_signal[i] = out.exports_of(a)?;
                o.pos[i] = a.pos;
            }
        }
        Ok(o)
    }

    pub(super) fn node(&self, t: &Target) -> Result<&Node, Error> {
        let node = self.nodes.get(&t.component).ok_or_else(|| {
            Error::at(
                t.pos,
                t.component.clone(),
                format!("`{}` has no exports that can receive data", t.component),
            )
        })?;
        let (export, what) = node.export();
        if t.export != export {
            let reason = if export.is_empty() {
                format!("`{}` is {what}", t.component)
            } else {
                format!(
                    "`{}.{}`: {} is {what}; its export is `{export}`",
                    t.component, t.export, t.component
                )
            };
            return Err(Error::at(
                t.pos,
                format!("{}.{}", t.component, t.export),
                reason,
            ));
        }
        Ok(node)
    }

    /// Sluice exporters reached from `t` for `signal`, each with the processors on the way
    /// (in order; the batch processor among them).
    pub(super) fn routes(
        &self,
        t: &Target,
        signal: usize,
        procs: Vec<String>,
        stack: &mut Vec<String>,
    ) -> Result<Vec<(Vec<String>, String)>, Error> {
        if stack.contains(&t.component) {
            return Err(Error::at(
                t.pos,
                t.component.clone(),
                format!("reference cycle: {} → {}", stack.join(" → "), t.component),
            ));
        }
        let sig = SIGNALS[signal];
        let node = self.node(t)?;
        let mut out = Vec::new();
        let mut follow =
            |outputs: &Outputs, procs: Vec<String>, out: &mut Vec<_>| -> Result<(), Error> {
                stack.push(t.component.clone());
                for next in &outputs.by_signal[signal] {
                    out.extend(self.routes(next, signal, procs.clone(), stack)?);
                }
                stack.pop();
                Ok(())
            };
        match node {
            Node::Batch { name, outputs } => {
                let batch = procs.iter().find(|p| {
                    self.comps
                        .iter()
                        .any(|c| c.section == "processors" && c.ty == "batch" && &c.name == *p)
                });
                if let Some(first) = batch {
                    return Err(Error::at(
                        t.pos,
                        t.component.clone(),
                        format!(
                            "two batch processors on one route (processors.{first}, then {}): Sluice batches once per pipeline, after the spool",
                            t.component
                        ),
                    ));
                }
                let mut procs = procs.clone();
                procs.push(name.clone());
                follow(outputs, procs, &mut out)?;
            }
            Node::Processor { name, outputs } => {
                let mut procs = procs.clone();
                procs.push(name.clone());
                follow(outputs, procs, &mut out)?;
            }
            Node::Exporter { name } => out.push((procs, name.clone())),
            Node::PromConverter { forward } | Node::LokiConverter { forward } => {
                let (takes, want) = if matches!(node, Node::PromConverter { .. }) {
                    ("metrics", "prometheus.remote_write")
                } else {
                    ("logs", "loki.write")
                };
                if sig != takes {
                    return Err(Error::at(
                        t.pos,
                        format!("{}.{}", t.component, t.export),
                        format!(
                            "{} takes {takes} only, but {sig} are sent to it here",
                            t.component
                        ),
                    ));
                }
                for f in forward {
                    let exporters = match (self.node(f)?, want) {
                        (Node::RemoteWrite { exporters }, "prometheus.remote_write")
                        | (Node::LokiWrite { exporters }, "loki.write") => exporters,
                        _ => {
                            return Err(Error::at(
                                f.pos,
                                f.component.clone(),
                                format!(
                                    "{}'s forward_to takes {want} receivers; `{}` is not one",
                                    t.component, f.component
                                ),
                            ));
                        }
                    };
                    for e in exporters {
                        out.push((procs.clone(), self.comps[*e].name.clone()));
                    }
                }
            }
            Node::RemoteWrite { .. } | Node::LokiWrite { .. } | Node::LokiProcess { .. } => {
                let via = if matches!(node, Node::RemoteWrite { .. }) {
                    "otelcol.exporter.prometheus"
                } else {
                    "otelcol.exporter.loki"
                };
                return Err(Error::at(
                    t.pos,
                    format!("{}.{}", t.component, t.export),
                    format!(
                        "{} takes data from Prometheus/Loki components, not OpenTelemetry data; send it through {via} (forward_to = [{}.{}])",
                        t.component, t.component, t.export
                    ),
                ));
            }
            Node::Receiver { .. }
            | Node::PromReceiver { .. }
            | Node::Auth { .. }
            | Node::FileMatch { .. }
            | Node::FileSource { .. } => {
                // `node()` already refused these: their exports are not `input`.
                return Err(Error::at(t.pos, t.component.clone(), "not a data consumer"));
            }
        }
        Ok(out)
    }
}
