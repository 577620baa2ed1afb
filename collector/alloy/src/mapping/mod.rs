//! Alloy components → Sluice TOML. Each supported component has a function that reads its
//! attributes and blocks (refusing any it does not know, with the list it does) into Sluice
//! TOML tables; the references between components are then walked from each receiver to the
//! exporters they reach, and every distinct route becomes a `[[pipelines]]` entry.
//!
//! Modules: `reader` (strict reading of one block), `values` and `toml_out` (the TOML being
//! written), `graph` (references and routes), `pipelines` (routes → `[[pipelines]]`, output),
//! and one module per family of components: `receivers`, `processors`, `exporters`,
//! `prometheus`, `loki`.

mod exporters;
mod file_logs;
mod graph;
mod loki;
mod pipelines;
mod processors;
mod prometheus;
mod reader;
mod receivers;
mod toml_out;
mod values;

use crate::Error;
use crate::eval::{EBlock, Evaluator};
use crate::parser::Stmt;
use graph::Node;
use reader::Reader;
use std::collections::HashMap;
use toml_out::Table;

/// Where a line of the generated TOML came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub pos: usize,
    /// Dotted Alloy path, e.g. `prometheus.remote_write.mimir.endpoint.url`.
    pub key: String,
}

/// The `logging` block: applied by `sluice run` unless `--log.level`/`--log.format` are given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logging {
    pub level: Option<String>,
    /// `logfmt` (Sluice's `text`) or `json`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub toml: String,
    /// Origin of each line of `toml` (index = line number - 1).
    pub origins: Vec<Origin>,
    pub logging: Option<Logging>,
}

pub const SUPPORTED_COMPONENTS: &[&str] = &[
    "otelcol.receiver.otlp",
    "otelcol.processor.batch",
    "otelcol.processor.memory_limiter",
    "otelcol.processor.attributes",
    "otelcol.processor.filter",
    "otelcol.processor.transform",
    "otelcol.processor.tail_sampling",
    "otelcol.processor.redaction",
    "otelcol.exporter.otlp",
    "otelcol.exporter.otlphttp",
    "otelcol.exporter.debug",
    "otelcol.exporter.prometheus",
    "prometheus.remote_write",
    "otelcol.exporter.loki",
    "loki.write",
    "otelcol.auth.basic",
    "otelcol.auth.bearer",
    "prometheus.scrape",
    "local.file_match",
    "loki.source.file",
    "loki.process",
    "logging",
];

const SIGNALS: [&str; 3] = ["traces", "metrics", "logs"];

#[derive(Clone)]
struct Comp {
    section: &'static str,
    name: String,
    ty: &'static str,
    /// `otelcol.exporter.otlp "tempo"`
    source: String,
    origin: Origin,
    body: Table,
    notes: Vec<String>,
    /// For converter options applied to this exporter: (key, value, from).
    applied: Vec<(String, String, String)>,
}

struct Mapper<'e> {
    ev: Evaluator<'e>,
    text: &'e str,
    comps: Vec<Comp>,
    nodes: HashMap<String, Node>,
    /// Component ids in source order.
    order: Vec<String>,
    blocks: HashMap<String, EBlock>,
    logging: Option<Logging>,
    /// Loki exporter → the exporter file sources use for its endpoint (itself or a copy).
    file_exporters: HashMap<usize, usize>,
}

fn quoted_id(b: &EBlock) -> String {
    match &b.label {
        Some(l) => format!("{} {l:?}", b.name),
        None => b.name.clone(),
    }
}

fn block_id(b: &EBlock) -> String {
    match &b.label {
        Some(l) => format!("{}.{l}", b.name),
        None => b.name.clone(),
    }
}

pub fn map<'e>(
    text: &'e str,
    stmts: &[Stmt],
    env: &'e dyn Fn(&str) -> Option<String>,
) -> Result<Converted, Error> {
    // Component ids first: references may point forward.
    let mut ids: Vec<String> = Vec::new();
    let mut blocks = Vec::new();
    for s in stmts {
        match s {
            Stmt::Attr(a) => {
                return Err(Error::at(
                    a.pos,
                    a.name.clone(),
                    "attributes are not allowed at the top level of an Alloy file; put them in a component block",
                ));
            }
            Stmt::Block(b) => {
                let name = b.full_name();
                if !SUPPORTED_COMPONENTS.contains(&name.as_str()) {
                    return Err(Error::at(
                        b.pos,
                        name.clone(),
                        format!(
                            "component `{name}` is not supported by Sluice; supported: {} (docs/alloy.md)",
                            SUPPORTED_COMPONENTS.join(", ")
                        ),
                    ));
                }
                let id = match (&b.label, name.as_str()) {
                    (None, "logging") => name.clone(),
                    (Some(_), "logging") => {
                        return Err(Error::at(b.pos, name, "the `logging` block takes no label"));
                    }
                    (Some(l), _) => format!("{name}.{l}"),
                    (None, _) => {
                        return Err(Error::at(
                            b.pos,
                            name.clone(),
                            format!(
                                "component `{name}` needs a label, e.g. {name} \"default\" {{ ... }}"
                            ),
                        ));
                    }
                };
                if ids.contains(&id) {
                    return Err(Error::at(
                        b.pos,
                        id.clone(),
                        format!("`{id}` is declared twice; labels must be unique per component"),
                    ));
                }
                ids.push(id);
                blocks.push(b);
            }
        }
    }
    let mut m = Mapper {
        ev: Evaluator {
            env,
            components: ids.clone(),
            baked: Vec::new(),
        },
        text,
        comps: Vec::new(),
        nodes: HashMap::new(),
        order: Vec::new(),
        blocks: HashMap::new(),
        logging: None,
        file_exporters: HashMap::new(),
    };
    let mut evaluated = Vec::new();
    for b in blocks {
        evaluated.push(m.ev.block(b)?);
    }
    // First what others read while they are mapped: authentication (exporters read their
    // header values), file targets and `loki.process` stages (file sources read them).
    let read_by_others = |b: &EBlock| {
        b.name.starts_with("otelcol.auth.")
            || matches!(b.name.as_str(), "local.file_match" | "loki.process")
    };
    for pass in [true, false] {
        for b in &evaluated {
            if read_by_others(b) == pass {
                m.component(b)?;
            }
        }
    }
    m.finish()
}

impl Mapper<'_> {
    fn alloc_name(&self, section: &str, wanted: &str) -> String {
        let taken = |n: &str| {
            self.comps
                .iter()
                .any(|c| c.section == section && c.name == n)
        };
        if !taken(wanted) {
            return wanted.to_string();
        }
        (2..)
            .map(|i| format!("{wanted}_{i}"))
            .find(|n| !taken(n))
            .unwrap_or_else(|| wanted.to_string())
    }

    fn add_comp(
        &mut self,
        b: &EBlock,
        section: &'static str,
        ty: &'static str,
        body: Table,
    ) -> usize {
        let origin = Origin {
            pos: b.pos,
            key: block_id(b),
        };
        let wanted = b.label.as_deref().unwrap_or("default");
        self.add_named_comp(section, wanted, ty, quoted_id(b), origin, body)
    }

    /// A component named `wanted` (with a suffix on a clash).
    fn add_named_comp(
        &mut self,
        section: &'static str,
        wanted: &str,
        ty: &'static str,
        source: String,
        origin: Origin,
        body: Table,
    ) -> usize {
        let name = self.alloc_name(section, wanted);
        self.comps.push(Comp {
            section,
            name,
            ty,
            source,
            origin,
            body,
            notes: Vec::new(),
            applied: Vec::new(),
        });
        self.comps.len() - 1
    }

    /// `logging`: read for the command line, no component.
    fn logging_block(&mut self, b: &EBlock, id: &str) -> Result<(), Error> {
        let r = Reader::component(b, id, &["level", "format"], &[])?;
        let mut l = Logging::default();
        if let Some(a) = r.attr("level") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            if !matches!(v.as_str(), "debug" | "info" | "warn" | "error") {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    format!("level {v:?}: use debug, info, warn or error"),
                ));
            }
            l.level = Some(v);
        }
        if let Some(a) = r.attr("format") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            if !matches!(v.as_str(), "logfmt" | "json") {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    format!("format {v:?}: use logfmt or json"),
                ));
            }
            l.format = Some(v);
        }
        self.logging = Some(l);
        Ok(())
    }

    fn component(&mut self, b: &EBlock) -> Result<(), Error> {
        let id = block_id(b);
        let node = match b.name.as_str() {
            "logging" => {
                self.logging_block(b, &id)?;
                None
            }
            "otelcol.auth.basic" => Some(self.auth_basic(b, &id)?),
            "otelcol.auth.bearer" => Some(self.auth_bearer(b, &id)?),
            "otelcol.receiver.otlp" => Some(self.otlp_receiver(b, &id)?),
            "otelcol.processor.batch" => Some(self.batch(b, &id)?),
            "otelcol.processor.memory_limiter" => Some(self.memory_limiter(b, &id)?),
            "otelcol.processor.attributes"
            | "otelcol.processor.filter"
            | "otelcol.processor.transform"
            | "otelcol.processor.tail_sampling" => Some(self.spec_processor(b, &id)?),
            "otelcol.exporter.otlp" | "otelcol.exporter.otlphttp" => {
                Some(self.otlp_exporter(b, &id)?)
            }
            "otelcol.exporter.debug" => Some(self.debug_exporter(b, &id)?),
            "otelcol.exporter.prometheus" => Some(self.prometheus_converter(b, &id)?),
            "otelcol.exporter.loki" => Some(self.loki_converter(b, &id)?),
            "prometheus.remote_write" => Some(self.remote_write(b, &id)?),
            "prometheus.scrape" => Some(self.scrape(b, &id)?),
            "loki.write" => Some(self.loki_write(b, &id)?),
            "otelcol.processor.redaction" => Some(self.redaction(b, &id)?),
            "local.file_match" => Some(self.file_match(b, &id)?),
            "loki.source.file" => Some(self.file_source(b, &id)?),
            "loki.process" => Some(self.loki_process(b, &id)?),
            _ => {
                // Unreachable: `map` refuses unsupported components first.
                return Err(Error::at(b.pos, id, "unsupported component"));
            }
        };
        if let Some(n) = node {
            self.nodes.insert(id.clone(), n);
            self.order.push(id.clone());
        }
        self.blocks.insert(id, b.clone());
        Ok(())
    }
}
