//! The routes found in the graph become `[[pipelines]]`, and everything is written out as
//! Sluice TOML with its Alloy origins.

use super::graph::{Node, Outputs, Target};
use super::toml_out::{Out, toml_key, toml_string};
use super::{Converted, Mapper, Origin, SIGNALS};
use crate::Error;
use std::collections::{BTreeSet, HashMap};

impl Mapper<'_> {
    pub(super) fn finish(mut self) -> Result<Converted, Error> {
        self.apply_converter_options()?;
        self.prepare_file_exporters()?;
        // (signal, processors) → receiver → exporters, with the origin of the first route.
        struct Group {
            signal: usize,
            procs: Vec<String>,
            receivers: Vec<(String, BTreeSet<String>, Origin)>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut descriptions: HashMap<(usize, String), Vec<String>> = HashMap::new();
        /// How a receiver's targets are followed.
        #[derive(Clone, Copy)]
        enum Kind {
            Otlp,
            Prometheus,
            Files,
        }
        // Prometheus and Loki sources send one signal to their `forward_to`.
        let one_signal = |signal: &str, forward: &[Target], pos: usize, key: &str| {
            let mut o = Outputs {
                pos: [pos; 3],
                key: key.to_string(),
                ..Default::default()
            };
            if let Some(i) = SIGNALS.iter().position(|s| *s == signal) {
                o.by_signal[i] = forward.to_vec();
            }
            o
        };
        for id in &self.order {
            let sources: Vec<(&String, Outputs, Kind)> = match self.nodes.get(id) {
                Some(Node::Receiver { name, outputs }) => vec![(name, outputs.clone(), Kind::Otlp)],
                Some(Node::PromReceiver {
                    name,
                    forward,
                    pos,
                    key,
                }) => vec![(
                    name,
                    one_signal("metrics", forward, *pos, key),
                    Kind::Prometheus,
                )],
                Some(Node::FileSource {
                    receivers,
                    forward,
                    pos,
                    key,
                }) => receivers
                    .iter()
                    .map(|name| (name, one_signal("logs", forward, *pos, key), Kind::Files))
                    .collect(),
                _ => continue,
            };
            for (name, outputs, kind) in sources {
                for (signal, targets) in outputs.by_signal.iter().enumerate() {
                    let origin = Origin {
                        pos: outputs.pos[signal],
                        key: format!("{}.{}", outputs.key, SIGNALS[signal]),
                    };
                    for t in targets {
                        let mut stack = vec![id.clone()];
                        let routes = match kind {
                            Kind::Prometheus => self.prometheus_routes(t)?,
                            Kind::Otlp => self.routes(t, signal, Vec::new(), &mut stack)?,
                            Kind::Files => self
                                .file_source_exporters(id, t)?
                                .into_iter()
                                .map(|e| {
                                    let e = self.file_exporters.get(&e).copied().unwrap_or(e);
                                    (Vec::new(), self.comps[e].name.clone())
                                })
                                .collect(),
                        };
                        for (procs, exporter) in routes {
                            let g = match groups
                                .iter_mut()
                                .position(|g| g.signal == signal && g.procs == procs)
                            {
                                Some(i) => &mut groups[i],
                                None => {
                                    groups.push(Group {
                                        signal,
                                        procs: procs.clone(),
                                        receivers: Vec::new(),
                                    });
                                    let last = groups.len() - 1;
                                    &mut groups[last]
                                }
                            };
                            match g.receivers.iter_mut().find(|(r, _, _)| r == name) {
                                Some((_, set, _)) => {
                                    set.insert(exporter.clone());
                                }
                                None => g.receivers.push((
                                    name.clone(),
                                    BTreeSet::from([exporter.clone()]),
                                    origin.clone(),
                                )),
                            }
                            descriptions
                                .entry((signal, name.clone()))
                                .or_default()
                                .push(format!("{} → exporters.{}", t.component, exporter));
                        }
                    }
                }
            }
        }
        // Receivers with the same exporters share a pipeline; then signals with the same
        // receivers, processors and exporters do.
        struct Pipe {
            signals: Vec<usize>,
            procs: Vec<String>,
            receivers: Vec<String>,
            exporters: BTreeSet<String>,
            origin: Origin,
        }
        let mut pipes: Vec<Pipe> = Vec::new();
        for g in groups {
            let mut by_exporters: Vec<Pipe> = Vec::new();
            for (r, exps, origin) in g.receivers {
                match by_exporters.iter_mut().find(|p| p.exporters == exps) {
                    Some(p) => p.receivers.push(r),
                    None => by_exporters.push(Pipe {
                        signals: vec![g.signal],
                        procs: g.procs.clone(),
                        receivers: vec![r],
                        exporters: exps,
                        origin,
                    }),
                }
            }
            for p in by_exporters {
                match pipes.iter_mut().find(|q| {
                    q.procs == p.procs && q.receivers == p.receivers && q.exporters == p.exporters
                }) {
                    Some(q) => q.signals.extend(p.signals),
                    None => pipes.push(p),
                }
            }
        }

        let mut out = Out::default();
        let top = Origin {
            pos: 0,
            key: String::new(),
        };
        out.line(
            "# Sluice configuration converted from Alloy syntax (see docs/alloy.md).".into(),
            top.clone(),
        );
        out.line(
            "# Each section names the Alloy block it came from.".into(),
            top.clone(),
        );
        let mut baked: Vec<(usize, String)> = std::mem::take(&mut self.ev.baked);
        baked.sort();
        baked.dedup();
        for (pos, name) in &baked {
            let (line, _) = self.line_col(*pos);
            out.line(
                format!("# Note: ${name} (line {line}) was read at conversion time; its value is written below."),
                Origin { pos: *pos, key: String::new() },
            );
        }
        for c in &self.comps {
            out.line(String::new(), c.origin.clone());
            let (line, col) = self.line_col(c.origin.pos);
            out.line(
                format!("# {} (line {line}, column {col})", c.source),
                c.origin.clone(),
            );
            for n in &c.notes {
                out.line(format!("# Note: {n}"), c.origin.clone());
            }
            out.line(
                format!("[{}.{}]", c.section, toml_key(&c.name)),
                c.origin.clone(),
            );
            out.line(format!("type = {}", toml_string(c.ty)), c.origin.clone());
            c.body
                .render(&format!("{}.{}", c.section, toml_key(&c.name)), &mut out);
        }
        let mut names: Vec<String> = Vec::new();
        for p in &pipes {
            let mut signals = p.signals.clone();
            signals.sort();
            signals.dedup();
            let base: Vec<&str> = signals.iter().map(|s| SIGNALS[*s]).collect();
            let base = base.join("_");
            let name = if names.contains(&base) {
                (2..)
                    .map(|i| format!("{base}_{i}"))
                    .find(|n| !names.contains(n))
                    .unwrap_or(base)
            } else {
                base
            };
            names.push(name.clone());
            let o = p.origin.clone();
            out.line(String::new(), o.clone());
            let mut routes = Vec::new();
            for s in &signals {
                for r in &p.receivers {
                    if let Some(d) = descriptions.get(&(*s, r.clone())) {
                        routes.extend(
                            d.iter()
                                .map(|d| format!("{}: receivers.{r} → {d}", SIGNALS[*s])),
                        );
                    }
                }
            }
            routes.dedup();
            let (line, _) = self.line_col(o.pos);
            out.line(
                format!("# Routes from line {line}: {}", routes.join("; ")),
                o.clone(),
            );
            out.line("[[pipelines]]".into(), o.clone());
            out.line(format!("name = {}", toml_string(&name)), o.clone());
            let list = |items: &mut dyn Iterator<Item = String>| {
                format!(
                    "[{}]",
                    items
                        .map(|s| toml_string(&s))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            out.line(
                format!(
                    "signals = {}",
                    list(&mut signals.iter().map(|s| SIGNALS[*s].to_string()))
                ),
                o.clone(),
            );
            out.line(
                format!("receivers = {}", list(&mut p.receivers.iter().cloned())),
                o.clone(),
            );
            if !p.procs.is_empty() {
                out.line(
                    format!("processors = {}", list(&mut p.procs.iter().cloned())),
                    o.clone(),
                );
            }
            out.line(
                format!("exporters = {}", list(&mut p.exporters.iter().cloned())),
                o.clone(),
            );
        }
        let mut toml = String::new();
        let mut origins = Vec::new();
        for (l, o) in out.lines {
            toml.push_str(&l);
            toml.push('\n');
            origins.push(o);
        }
        Ok(Converted {
            toml,
            origins,
            logging: self.logging,
        })
    }

    pub(super) fn line_col(&self, pos: usize) -> (usize, usize) {
        crate::line_col(self.text, pos)
    }
}
