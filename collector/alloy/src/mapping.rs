//! Alloy components → Sluice TOML. Each supported component has a function that reads its
//! attributes and blocks (refusing any it does not know, with the list it does) into Sluice
//! TOML tables; the references between components are then walked from each receiver to the
//! exporters they reach, and every distinct route becomes a `[[pipelines]]` entry.

use crate::Error;
use crate::eval::{EAttr, EBlock, Evaluator, Piece, Str, Value};
use crate::parser::Stmt;
use base64::Engine;
use std::collections::{BTreeSet, HashMap};

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
    "logging",
];

const SIGNALS: [&str; 3] = ["traces", "metrics", "logs"];

/// How an Alloy processor block maps onto its Sluice processor's TOML: which attributes it
/// takes (same names), and which nested blocks (repeated ones become arrays of tables).
struct Spec {
    attrs: &'static [&'static str],
    blocks: &'static [Nested],
}

struct Nested {
    alloy: &'static str,
    toml: &'static str,
    repeated: bool,
    spec: &'static Spec,
}

impl Spec {
    fn block_names(&self) -> Vec<&'static str> {
        self.blocks.iter().map(|b| b.alloy).collect()
    }
}

const ACTION: Spec = Spec {
    attrs: &[
        "key",
        "value",
        "pattern",
        "from_attribute",
        "converted_type",
        "action",
    ],
    blocks: &[],
};
const ATTRIBUTES: Spec = Spec {
    attrs: &[],
    blocks: &[Nested {
        alloy: "action",
        toml: "actions",
        repeated: true,
        spec: &ACTION,
    }],
};
const FILTER: Spec = Spec {
    attrs: &["error_mode"],
    blocks: &[
        Nested {
            alloy: "traces",
            toml: "traces",
            repeated: false,
            spec: &Spec {
                attrs: &["span"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "metrics",
            toml: "metrics",
            repeated: false,
            spec: &Spec {
                attrs: &["metric", "datapoint"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "logs",
            toml: "logs",
            repeated: false,
            spec: &Spec {
                attrs: &["log_record"],
                blocks: &[],
            },
        },
    ],
};
const STATEMENTS: Spec = Spec {
    attrs: &["context", "statements"],
    blocks: &[],
};
const TRANSFORM: Spec = Spec {
    attrs: &["error_mode"],
    blocks: &[
        Nested {
            alloy: "trace_statements",
            toml: "trace_statements",
            repeated: true,
            spec: &STATEMENTS,
        },
        Nested {
            alloy: "metric_statements",
            toml: "metric_statements",
            repeated: true,
            spec: &STATEMENTS,
        },
        Nested {
            alloy: "log_statements",
            toml: "log_statements",
            repeated: true,
            spec: &STATEMENTS,
        },
    ],
};
const POLICY: Spec = Spec {
    attrs: &["name", "type"],
    blocks: &[
        Nested {
            alloy: "status_code",
            toml: "status_code",
            repeated: false,
            spec: &Spec {
                attrs: &["status_codes"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "latency",
            toml: "latency",
            repeated: false,
            spec: &Spec {
                attrs: &["threshold_ms", "upper_threshold_ms"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "probabilistic",
            toml: "probabilistic",
            repeated: false,
            spec: &Spec {
                attrs: &["sampling_percentage", "hash_salt"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "ottl_condition",
            toml: "ottl_condition",
            repeated: false,
            spec: &Spec {
                attrs: &["error_mode", "span"],
                blocks: &[],
            },
        },
    ],
};
const TAIL_SAMPLING: Spec = Spec {
    attrs: &["decision_wait", "num_traces", "expected_new_traces_per_sec"],
    blocks: &[Nested {
        alloy: "policy",
        toml: "policies",
        repeated: true,
        spec: &POLICY,
    }],
};

/// A size such as `512MiB`, `2GiB`, `1000000000` (bytes), in MiB (rounded down).
fn mib_of(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().ok()?;
    let bytes = match t[split..].trim() {
        "" | "B" => n,
        "KiB" => n << 10,
        "MiB" => n << 20,
        "GiB" => n << 30,
        "TiB" => n << 40,
        "KB" | "kB" => n * 1_000,
        "MB" => n * 1_000_000,
        "GB" => n * 1_000_000_000,
        _ => return None,
    };
    Some(bytes >> 20)
}

// ---------------------------------------------------------------------------------------------
// The TOML being built.

/// A TOML table being built: values first, then sub-tables, each with its Alloy origin.
#[derive(Default)]
struct Table {
    vals: Vec<(String, String, Origin)>,
    tables: Vec<(String, Table, Origin)>,
}

impl Table {
    fn set(&mut self, key: &str, rendered: String, origin: Origin) {
        self.vals.retain(|(k, _, _)| k != key);
        self.vals.push((key.to_string(), rendered, origin));
    }

    fn table(&mut self, key: &str, origin: Origin) -> &mut Table {
        let idx = match self.tables.iter().position(|(k, _, _)| k == key) {
            Some(i) => i,
            None => {
                self.tables
                    .push((key.to_string(), Table::default(), origin));
                self.tables.len() - 1
            }
        };
        &mut self.tables[idx].1
    }

    fn is_empty(&self) -> bool {
        self.vals.is_empty() && self.tables.is_empty()
    }

    fn has_key_ignore_case(&self, key: &str) -> bool {
        self.vals
            .iter()
            .any(|(k, _, _)| k.eq_ignore_ascii_case(key))
    }

    fn render(&self, path: &str, out: &mut Out) {
        for (k, v, origin) in &self.vals {
            out.line(format!("{} = {v}", toml_key(k)), origin.clone());
        }
        for (k, t, origin) in &self.tables {
            let p = format!("{path}.{}", toml_key(k));
            out.line(format!("[{p}]"), origin.clone());
            t.render(&p, out);
        }
    }
}

#[derive(Default)]
struct Out {
    lines: Vec<(String, Origin)>,
}

impl Out {
    fn line(&mut self, text: String, origin: Origin) {
        for l in text.split('\n') {
            self.lines.push((l.to_string(), origin.clone()));
        }
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml_string(k)
    }
}

/// A TOML basic string (TOML 1.0 "String"): quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

// ---------------------------------------------------------------------------------------------
// Reading a block strictly.

/// One Alloy block being mapped; refuses attributes and blocks not in its supported lists.
struct Reader<'b> {
    b: &'b EBlock,
    /// `otelcol.exporter.otlp.tempo.client`
    key: String,
    /// `otelcol.exporter.otlp "tempo" > client`
    what: String,
}

impl<'b> Reader<'b> {
    fn new(
        b: &'b EBlock,
        key: String,
        what: String,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Result<Reader<'b>, Error> {
        let supported = || {
            let mut all: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
            all.extend(blocks.iter().map(|b| format!("{b} {{ }}")));
            if all.is_empty() {
                "nothing".to_string()
            } else {
                all.join(", ")
            }
        };
        for a in &b.attrs {
            if !attrs.contains(&a.name.as_str()) {
                let hint = if blocks.contains(&a.name.as_str()) {
                    format!(" (`{}` is a block: {} {{ ... }})", a.name, a.name)
                } else {
                    String::new()
                };
                return Err(Error::at(
                    a.pos,
                    format!("{key}.{}", a.name),
                    format!(
                        "attribute `{}` of {what} is not supported by Sluice{hint}; supported: {} (docs/alloy.md)",
                        a.name,
                        supported()
                    ),
                ));
            }
        }
        for inner in &b.blocks {
            if !blocks.contains(&inner.name.as_str()) {
                return Err(Error::at(
                    inner.pos,
                    format!("{key}.{}", inner.name),
                    format!(
                        "block `{}` of {what} is not supported by Sluice; supported: {} (docs/alloy.md)",
                        inner.name,
                        supported()
                    ),
                ));
            }
            if let Some(l) = &inner.label {
                return Err(Error::at(
                    inner.pos,
                    format!("{key}.{}", inner.name),
                    format!("block `{}` takes no label, got {l:?}", inner.name),
                ));
            }
        }
        Ok(Reader { b, key, what })
    }

    fn attr(&self, name: &str) -> Option<&'b EAttr> {
        self.b.attrs.iter().find(|a| a.name == name)
    }

    fn origin(&self, a: &EAttr) -> Origin {
        Origin {
            pos: a.pos,
            key: format!("{}.{}", self.key, a.name),
        }
    }

    fn here(&self) -> Origin {
        Origin {
            pos: self.b.pos,
            key: self.key.clone(),
        }
    }

    fn origin_of_block(&self, b: &EBlock) -> Origin {
        Origin {
            pos: b.pos,
            key: format!("{}.{}", self.key, b.name),
        }
    }

    fn blocks(&self, name: &str) -> Vec<&'b EBlock> {
        self.b.blocks.iter().filter(|b| b.name == name).collect()
    }

    /// At most one `name { }` block.
    fn block(
        &self,
        name: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Result<Option<Reader<'b>>, Error> {
        let found = self.blocks(name);
        if let Some(second) = found.get(1) {
            return Err(Error::at(
                second.pos,
                format!("{}.{name}", self.key),
                format!("block `{name}` may appear only once in {}", self.what),
            ));
        }
        found
            .first()
            .map(|b| self.child(b, attrs, blocks))
            .transpose()
    }

    fn child(&self, b: &'b EBlock, attrs: &[&str], blocks: &[&str]) -> Result<Reader<'b>, Error> {
        Reader::new(
            b,
            format!("{}.{}", self.key, b.name),
            format!("{} > {}", self.what, b.name),
            attrs,
            blocks,
        )
    }

    fn required(&self, name: &str) -> Result<&'b EAttr, Error> {
        self.attr(name).ok_or_else(|| {
            Error::at(
                self.b.pos,
                format!("{}.{name}", self.key),
                format!("{} needs the attribute `{name}`", self.what),
            )
        })
    }

    fn type_error(&self, a: &EAttr, want: &str) -> Error {
        Error::at(
            a.value_pos,
            format!("{}.{}", self.key, a.name),
            format!("`{}` must be {want}, got a {}", a.name, a.value.type_name()),
        )
    }

    fn str_of(&self, a: &EAttr) -> Result<Str, Error> {
        match &a.value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(self.type_error(a, "a string")),
        }
    }

    fn bool_of(&self, a: &EAttr) -> Result<bool, Error> {
        match a.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.type_error(a, "a bool")),
        }
    }

    fn int_of(&self, a: &EAttr) -> Result<i64, Error> {
        match a.value {
            Value::Int(i) => Ok(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(f as i64),
            _ => Err(self.type_error(a, "an integer")),
        }
    }

    fn float_of(&self, a: &EAttr) -> Result<f64, Error> {
        match a.value {
            Value::Int(i) => Ok(i as f64),
            Value::Float(f) => Ok(f),
            _ => Err(self.type_error(a, "a number")),
        }
    }

    fn map_of(&self, a: &EAttr) -> Result<Vec<(String, Str)>, Error> {
        let Value::Object(fields) = &a.value else {
            return Err(self.type_error(a, "an object of strings, e.g. { \"X-Key\" = \"v\" }"));
        };
        fields
            .iter()
            .map(|(k, v)| match v {
                Value::Str(s) => Ok((k.clone(), s.clone())),
                other => Err(Error::at(
                    a.value_pos,
                    format!("{}.{}.{k}", self.key, a.name),
                    format!(
                        "`{}` values must be strings; {k:?} is a {}",
                        a.name,
                        other.type_name()
                    ),
                )),
            })
            .collect()
    }

    /// A list of component exports, e.g. `[otelcol.processor.batch.default.input]`.
    fn exports_of(&self, a: &EAttr) -> Result<Vec<Target>, Error> {
        let Value::Array(items) = &a.value else {
            return Err(self.type_error(
                a,
                "a list of component exports, e.g. [otelcol.processor.batch.default.input]",
            ));
        };
        items
            .iter()
            .map(|v| match v {
                Value::Export { component, export } => Ok(Target {
                    component: component.clone(),
                    export: export.clone(),
                    pos: a.value_pos,
                }),
                other => Err(Error::at(
                    a.value_pos,
                    format!("{}.{}", self.key, a.name),
                    format!(
                        "`{}` must list component exports (e.g. otelcol.processor.batch.default.input), found a {}",
                        a.name,
                        other.type_name()
                    ),
                )),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The component graph.

#[derive(Debug, Clone)]
struct Target {
    component: String,
    export: String,
    pos: usize,
}

#[derive(Default, Debug)]
struct Outputs {
    by_signal: [Vec<Target>; 3],
    /// Position of each signal's attribute, for pipeline origins.
    pos: [usize; 3],
    key: String,
}

enum Node {
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
}

impl Node {
    /// The export other components may reference, and what it is.
    fn export(&self) -> (&'static str, &'static str) {
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
        }
    }
}

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
    };
    let mut evaluated = Vec::new();
    for b in blocks {
        evaluated.push(m.ev.block(b)?);
    }
    // Authentication first: exporters read their header values.
    for pass in [true, false] {
        for b in &evaluated {
            if b.name.starts_with("otelcol.auth.") == pass {
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
        let name = self.alloc_name(section, b.label.as_deref().unwrap_or("default"));
        self.comps.push(Comp {
            section,
            name,
            ty,
            source: quoted_id(b),
            origin: Origin {
                pos: b.pos,
                key: block_id(b),
            },
            body,
            notes: Vec::new(),
            applied: Vec::new(),
        });
        self.comps.len() - 1
    }

    /// TOML text of an Alloy string; `env()` pieces become `${VAR:-default}`.
    fn render(&mut self, s: &Str, pos: usize) -> String {
        let mut text = String::new();
        for p in &s.0 {
            match p {
                Piece::Lit(l) => text.push_str(&l.replace("${", "$${")),
                Piece::Env { name, default }
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !default.contains('}')
                        && !default.contains('$') =>
                {
                    text.push_str(&format!("${{{name}:-{default}}}"));
                }
                Piece::Env { .. } => {
                    let v = self.ev.resolve(&Str(vec![p.clone()]), pos);
                    text.push_str(&v.replace("${", "$${"));
                }
            }
        }
        toml_string(&text)
    }

    fn set_str(&mut self, t: &mut Table, key: &str, r: &Reader, a: &EAttr) -> Result<(), Error> {
        let s = r.str_of(a)?;
        let v = self.render(&s, a.value_pos);
        t.set(key, v, r.origin(a));
        Ok(())
    }

    /// Copies string attributes that keep their name.
    fn copy_strs(&mut self, t: &mut Table, r: &Reader, names: &[&str]) -> Result<(), Error> {
        for n in names {
            if let Some(a) = r.attr(n) {
                self.set_str(t, n, r, a)?;
            }
        }
        Ok(())
    }

    fn copy_bools(t: &mut Table, r: &Reader, names: &[(&str, &str)]) -> Result<(), Error> {
        for (from, to) in names {
            if let Some(a) = r.attr(from) {
                t.set(to, r.bool_of(a)?.to_string(), r.origin(a));
            }
        }
        Ok(())
    }

    fn set_map(&mut self, t: &mut Table, key: &str, r: &Reader, a: &EAttr) -> Result<(), Error> {
        let entries = r.map_of(a)?;
        let sub = t.table(key, r.origin(a));
        for (k, v) in entries {
            let rendered = self.render(&v, a.value_pos);
            sub.set(&k, rendered, r.origin(a));
        }
        Ok(())
    }

    /// Registers an in-line processor component and its node.
    fn processor(
        &mut self,
        b: &EBlock,
        r: &Reader,
        ty: &'static str,
        body: Table,
    ) -> Result<Node, Error> {
        let outputs = self.outputs(r)?;
        let c = self.add_comp(b, "processors", ty, body);
        Ok(Node::Processor {
            name: self.comps[c].name.clone(),
            outputs,
        })
    }

    /// An attribute value as TOML: strings, numbers, booleans and lists of them.
    fn value_toml(&mut self, r: &Reader, a: &EAttr, v: &Value) -> Result<String, Error> {
        Ok(match v {
            Value::Str(s) => self.render(s, a.value_pos),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => toml_float(*f),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    parts.push(self.value_toml(r, a, item)?);
                }
                format!("[{}]", parts.join(", "))
            }
            _ => return Err(r.type_error(a, "a string, number, bool or a list of them")),
        })
    }

    /// Copies a block by `spec` into `t`: attributes keep their names, single blocks become
    /// sub-tables, repeated blocks arrays of inline tables.
    fn spec_table(&mut self, r: &Reader, spec: &Spec, t: &mut Table) -> Result<(), Error> {
        for a in &r.b.attrs {
            if spec.attrs.contains(&a.name.as_str()) {
                let v = self.value_toml(r, a, &a.value)?;
                t.set(&a.name, v, r.origin(a));
            }
        }
        for nested in spec.blocks {
            let found = r.blocks(nested.alloy);
            if found.is_empty() {
                continue;
            }
            if nested.repeated {
                let mut items = Vec::new();
                for b in &found {
                    let child = r.child(b, nested.spec.attrs, &nested.spec.block_names())?;
                    items.push(self.spec_inline(&child, nested.spec)?);
                }
                t.set(
                    nested.toml,
                    format!("[{}]", items.join(", ")),
                    r.origin_of_block(found[0]),
                );
            } else {
                let Some(child) =
                    r.block(nested.alloy, nested.spec.attrs, &nested.spec.block_names())?
                else {
                    continue;
                };
                let sub = t.table(nested.toml, child.here());
                self.spec_table(&child, nested.spec, sub)?;
            }
        }
        Ok(())
    }

    /// A block as an inline TOML table, by `spec`.
    fn spec_inline(&mut self, r: &Reader, spec: &Spec) -> Result<String, Error> {
        let mut parts = Vec::new();
        for a in &r.b.attrs {
            let v = self.value_toml(r, a, &a.value)?;
            parts.push(format!("{} = {v}", toml_key(&a.name)));
        }
        for nested in spec.blocks {
            let found = r.blocks(nested.alloy);
            if found.is_empty() {
                continue;
            }
            let mut items = Vec::new();
            for b in &found {
                let child = r.child(b, nested.spec.attrs, &nested.spec.block_names())?;
                items.push(self.spec_inline(&child, nested.spec)?);
            }
            let v = if nested.repeated {
                format!("[{}]", items.join(", "))
            } else if items.len() == 1 {
                items.remove(0)
            } else {
                return Err(Error::at(
                    found[1].pos,
                    format!("{}.{}", r.key, nested.alloy),
                    format!(
                        "block `{}` may appear only once in {}",
                        nested.alloy, r.what
                    ),
                ));
            };
            parts.push(format!("{} = {v}", toml_key(nested.toml)));
        }
        Ok(format!("{{ {} }}", parts.join(", ")))
    }

    fn outputs(&self, r: &Reader) -> Result<Outputs, Error> {
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

    fn component(&mut self, b: &EBlock) -> Result<(), Error> {
        let id = block_id(b);
        let r = |attrs: &[&str], blocks: &[&str]| {
            Reader::new(b, id.clone(), quoted_id(b), attrs, blocks)
        };
        let node = match b.name.as_str() {
            "logging" => {
                let r = r(&["level", "format"], &[])?;
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
                None
            }
            "otelcol.auth.basic" => {
                let r = r(&["username", "password"], &[])?;
                let user = r.required("username")?;
                let pass = r.required("password")?;
                let u = self.ev.resolve(&r.str_of(user)?, user.value_pos);
                let p = self.ev.resolve(&r.str_of(pass)?, pass.value_pos);
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(Node::Auth {
                    header: Str::lit(format!("Basic {token}")),
                })
            }
            "otelcol.auth.bearer" => {
                let r = r(&["token", "scheme"], &[])?;
                let token = r.str_of(r.required("token")?)?;
                let scheme = match r.attr("scheme") {
                    Some(a) => r.str_of(a)?,
                    None => Str::lit("Bearer"),
                };
                let mut header = scheme;
                if header.literal().is_none_or(|s| !s.is_empty()) {
                    header.0.push(Piece::Lit(" ".into()));
                }
                header.0.extend(token.0);
                Some(Node::Auth { header })
            }
            "otelcol.receiver.otlp" => {
                let r = r(&[], &["grpc", "http", "output"])?;
                let mut body = Table::default();
                if let Some(g) = r.block("grpc", &["endpoint", "max_recv_msg_size"], &[])? {
                    let t = body.table("grpc", g.here());
                    self.copy_strs(t, &g, &["endpoint", "max_recv_msg_size"])?;
                }
                if let Some(h) = r.block("http", &["endpoint", "max_request_body_size"], &[])? {
                    let t = body.table("http", h.here());
                    self.copy_strs(t, &h, &["endpoint", "max_request_body_size"])?;
                }
                if body.is_empty() {
                    return Err(Error::at(
                        b.pos,
                        id.clone(),
                        "otelcol.receiver.otlp needs a `grpc { }` or an `http { }` block (an empty block listens on the default port)",
                    ));
                }
                let outputs = self.outputs(&r)?;
                let c = self.add_comp(b, "receivers", "otlp", body);
                Some(Node::Receiver {
                    name: self.comps[c].name.clone(),
                    outputs,
                })
            }
            "otelcol.processor.batch" => {
                let r = r(
                    &["timeout", "send_batch_size", "send_batch_max_size"],
                    &["output"],
                )?;
                let mut body = Table::default();
                self.copy_strs(&mut body, &r, &["timeout"])?;
                for n in ["send_batch_size", "send_batch_max_size"] {
                    if let Some(a) = r.attr(n) {
                        body.set(n, r.int_of(a)?.to_string(), r.origin(a));
                    }
                }
                let outputs = self.outputs(&r)?;
                let c = self.add_comp(b, "processors", "batch", body);
                Some(Node::Batch {
                    name: self.comps[c].name.clone(),
                    outputs,
                })
            }
            "otelcol.processor.memory_limiter" => {
                let r = r(
                    &[
                        "check_interval",
                        "limit",
                        "spike_limit",
                        "limit_percentage",
                        "spike_limit_percentage",
                    ],
                    &["output"],
                )?;
                let mut body = Table::default();
                let a = r.required("check_interval")?;
                self.set_str(&mut body, "check_interval", &r, a)?;
                for (from, to) in [("limit", "limit_mib"), ("spike_limit", "spike_limit_mib")] {
                    if let Some(a) = r.attr(from) {
                        let text = self.ev.resolve(&r.str_of(a)?, a.value_pos);
                        let mib = mib_of(&text).ok_or_else(|| {
                            Error::at(
                                a.value_pos,
                                r.origin(a).key,
                                format!(
                                    "{from} {text:?}: use a size such as \"512MiB\" or \"2GiB\""
                                ),
                            )
                        })?;
                        body.set(to, mib.to_string(), r.origin(a));
                    }
                }
                for n in ["limit_percentage", "spike_limit_percentage"] {
                    if let Some(a) = r.attr(n) {
                        body.set(n, r.int_of(a)?.to_string(), r.origin(a));
                    }
                }
                Some(self.processor(b, &r, "memory_limiter", body)?)
            }
            "otelcol.processor.attributes"
            | "otelcol.processor.filter"
            | "otelcol.processor.transform"
            | "otelcol.processor.tail_sampling" => {
                let (ty, spec) = match b.name.as_str() {
                    "otelcol.processor.attributes" => ("attributes", &ATTRIBUTES),
                    "otelcol.processor.filter" => ("filter", &FILTER),
                    "otelcol.processor.transform" => ("transform", &TRANSFORM),
                    _ => ("tail_sampling", &TAIL_SAMPLING),
                };
                let mut blocks: Vec<&str> = spec.blocks.iter().map(|b| b.alloy).collect();
                blocks.push("output");
                let r = r(spec.attrs, &blocks)?;
                let mut body = Table::default();
                self.spec_table(&r, spec, &mut body)?;
                Some(self.processor(b, &r, ty, body)?)
            }
            "otelcol.exporter.otlp" | "otelcol.exporter.otlphttp" => {
                Some(self.otlp_exporter(b, &id)?)
            }
            "otelcol.exporter.debug" => {
                let r = r(&["verbosity"], &[])?;
                let mut body = Table::default();
                if let Some(a) = r.attr("verbosity") {
                    let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
                    let mapped = match v.as_str() {
                        "basic" | "normal" => "basic",
                        "detailed" => "detailed",
                        _ => {
                            return Err(Error::at(
                                a.value_pos,
                                r.origin(a).key,
                                format!("verbosity {v:?}: use basic, normal or detailed"),
                            ));
                        }
                    };
                    body.set("verbosity", toml_string(mapped), r.origin(a));
                }
                let c = self.add_comp(b, "exporters", "debug", body);
                Some(Node::Exporter {
                    name: self.comps[c].name.clone(),
                })
            }
            "otelcol.exporter.prometheus" => {
                let r = r(
                    &[
                        "forward_to",
                        "include_target_info",
                        "include_scope_labels",
                        "add_metric_suffixes",
                    ],
                    &[],
                )?;
                let forward = r.exports_of(r.required("forward_to")?)?;
                for n in [
                    "include_target_info",
                    "include_scope_labels",
                    "add_metric_suffixes",
                ] {
                    if let Some(a) = r.attr(n) {
                        r.bool_of(a)?;
                    }
                }
                Some(Node::PromConverter { forward })
            }
            "otelcol.exporter.loki" => {
                let r = r(&["forward_to"], &[])?;
                let forward = r.exports_of(r.required("forward_to")?)?;
                Some(Node::LokiConverter { forward })
            }
            "prometheus.remote_write" => Some(self.remote_write(b, &id)?),
            "prometheus.scrape" => Some(self.scrape(b, &id)?),
            "loki.write" => Some(self.loki_write(b, &id)?),
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

    fn otlp_exporter(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let http = b.name == "otelcol.exporter.otlphttp";
        let top_attrs: &[&str] = if http {
            &["timeout", "encoding"]
        } else {
            &["timeout"]
        };
        let r = Reader::new(
            b,
            id.to_string(),
            quoted_id(b),
            top_attrs,
            &["client", "retry_on_failure", "sending_queue"],
        )?;
        let mut body = Table::default();
        let mut notes = Vec::new();
        let Some(client) = r.block(
            "client",
            &["endpoint", "compression", "headers", "auth"],
            &["tls"],
        )?
        else {
            return Err(Error::at(
                b.pos,
                format!("{id}.client"),
                format!("{} needs a `client {{ endpoint = ... }}` block", r.what),
            ));
        };
        let tls = client.block(
            "tls",
            &[
                "insecure",
                "insecure_skip_verify",
                "ca_file",
                "cert_file",
                "key_file",
                "server_name",
            ],
            &[],
        )?;
        let insecure = match tls.as_ref().and_then(|t| t.attr("insecure")) {
            Some(a) => tls.as_ref().map_or(Ok(false), |t| t.bool_of(a))?,
            None => false,
        };
        let ep_attr = client.required("endpoint")?;
        let mut endpoint = client.str_of(ep_attr)?;
        let lit = endpoint.literal();
        let has_scheme = lit.as_deref().is_some_and(|l| l.contains("://"));
        if http {
            if lit.is_some() && !has_scheme {
                return Err(Error::at(
                    ep_attr.value_pos,
                    client.origin(ep_attr).key,
                    "otelcol.exporter.otlphttp's endpoint is a URL with a scheme, e.g. \"http://tempo:4318\"",
                ));
            }
        } else if !has_scheme {
            // Alloy's gRPC endpoint is host:port; TLS is on unless tls { insecure = true }.
            let scheme = if insecure { "http://" } else { "https://" };
            endpoint.0.insert(0, Piece::Lit(scheme.into()));
        }
        let rendered = self.render(&endpoint, ep_attr.value_pos);
        body.set("endpoint", rendered, client.origin(ep_attr));
        if http {
            body.set("protocol", toml_string("http"), r.here());
        }
        if let Some(a) = r.attr("encoding") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            if v != "proto" {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    format!(
                        "encoding {v:?}: Sluice's OTLP/HTTP exporter sends protobuf only (\"proto\")"
                    ),
                ));
            }
        }
        if let Some(a) = client.attr("compression") {
            let v = self.ev.resolve(&client.str_of(a)?, a.value_pos);
            let mapped = match v.as_str() {
                "gzip" => "gzip",
                "none" | "" => "none",
                _ => {
                    return Err(Error::at(
                        a.value_pos,
                        client.origin(a).key,
                        format!(
                            "compression {v:?} is not supported by Sluice; supported: gzip, none"
                        ),
                    ));
                }
            };
            body.set("compression", toml_string(mapped), client.origin(a));
        }
        self.copy_strs(&mut body, &r, &["timeout"])?;
        if let Some(a) = client.attr("headers") {
            self.set_map(&mut body, "headers", &client, a)?;
        }
        if let Some(a) = client.attr("auth") {
            let handler = match &a.value {
                Value::Export { component, export } if export == "handler" => component.clone(),
                _ => {
                    return Err(client.type_error(
                        a,
                        "an authentication handler, e.g. otelcol.auth.basic.creds.handler",
                    ));
                }
            };
            let Some(Node::Auth { header }) = self.nodes.get(&handler) else {
                return Err(Error::at(
                    a.value_pos,
                    client.origin(a).key,
                    format!(
                        "`{handler}` is not an otelcol.auth.basic or otelcol.auth.bearer component"
                    ),
                ));
            };
            let header = header.clone();
            let v = self.render(&header, a.value_pos);
            let headers = body.table("headers", client.origin(a));
            if headers.has_key_ignore_case("authorization") {
                return Err(Error::at(
                    a.pos,
                    client.origin(a).key,
                    "both `auth` and an Authorization header are set; keep one",
                ));
            }
            headers.set("Authorization", v, client.origin(a));
        }
        if let Some(t) = &tls {
            let files = ["ca_file", "cert_file", "key_file", "server_name"];
            let mut tt = Table::default();
            self.copy_strs(&mut tt, t, &files)?;
            Self::copy_bools(
                &mut tt,
                t,
                &[("insecure_skip_verify", "insecure_skip_verify")],
            )?;
            if insecure && !tt.is_empty() {
                return Err(Error::at(
                    t.b.pos,
                    t.key.clone(),
                    "tls: `insecure = true` turns TLS off; the other tls settings cannot apply",
                ));
            }
            if !tt.is_empty() {
                *body.table("tls", t.here()) = tt;
            }
        }
        if let Some(rt) = r.block(
            "retry_on_failure",
            &[
                "enabled",
                "initial_interval",
                "max_interval",
                "max_elapsed_time",
                "multiplier",
                "randomization_factor",
            ],
            &[],
        )? {
            self.retry(&mut body, &rt)?;
        }
        if let Some(q) = r.block(
            "sending_queue",
            &["enabled", "num_consumers", "queue_size"],
            &[],
        )? {
            for n in ["num_consumers", "queue_size"] {
                if let Some(a) = q.attr(n) {
                    q.int_of(a)?;
                }
            }
            if let Some(a) = q.attr("enabled") {
                q.bool_of(a)?;
            }
            notes.push("sending_queue: Sluice queues in the pipeline's disk spool instead ([pipelines.spool])".to_string());
        }
        let c = self.add_comp(b, "exporters", "otlp", body);
        self.comps[c].notes = notes;
        Ok(Node::Exporter {
            name: self.comps[c].name.clone(),
        })
    }

    fn retry(&mut self, body: &mut Table, rt: &Reader) -> Result<(), Error> {
        if let Some(a) = rt.attr("enabled")
            && !rt.bool_of(a)?
        {
            return Err(Error::at(
                a.value_pos,
                rt.origin(a).key,
                "Sluice always retries what it has acknowledged (it is in the spool); to bound retries set max_elapsed_time",
            ));
        }
        let t = body.table("retry", rt.here());
        self.copy_strs(t, rt, &["initial_interval", "max_interval"])?;
        for n in ["multiplier", "randomization_factor"] {
            if let Some(a) = rt.attr(n) {
                t.set(n, toml_float(rt.float_of(a)?), rt.origin(a));
            }
        }
        if let Some(a) = rt.attr("max_elapsed_time") {
            let s = rt.str_of(a)?;
            if !matches!(s.literal().as_deref(), Some("0" | "0s")) {
                let v = self.render(&s, a.value_pos);
                t.set("max_age", v, rt.origin(a));
            }
        }
        Ok(())
    }

    /// `basic_auth`, `bearer_token`, `tls_config`, `headers`, `remote_timeout` of an endpoint.
    fn http_client(&mut self, body: &mut Table, ep: &Reader) -> Result<(), Error> {
        if let Some(a) = ep.attr("headers") {
            // Sluice's remote-write and Loki exporters take the tenant as `tenant_id`.
            for (k, v) in ep.map_of(a)? {
                let rendered = self.render(&v, a.value_pos);
                if k.eq_ignore_ascii_case("x-scope-orgid") {
                    body.set("tenant_id", rendered, ep.origin(a));
                } else {
                    body.table("headers", ep.origin(a))
                        .set(&k, rendered, ep.origin(a));
                }
            }
        }
        if let Some(a) = ep.attr("remote_timeout") {
            self.set_str(body, "timeout", ep, a)?;
        }
        if let Some(a) = ep.attr("bearer_token") {
            self.set_str(body, "bearer_token", ep, a)?;
        }
        if let Some(ba) = ep.block("basic_auth", &["username", "password"], &[])? {
            let user = ba.required("username")?;
            let pass = ba.required("password")?;
            let t = body.table("basic_auth", ba.here());
            self.set_str(t, "username", &ba, user)?;
            self.set_str(t, "password", &ba, pass)?;
        }
        if let Some(tc) = ep.block(
            "tls_config",
            &["ca_file", "cert_file", "key_file", "insecure_skip_verify"],
            &[],
        )? {
            let t = body.table("tls", tc.here());
            self.copy_strs(t, &tc, &["ca_file", "cert_file", "key_file"])?;
            Self::copy_bools(t, &tc, &[("insecure_skip_verify", "insecure_skip_verify")])?;
        }
        Ok(())
    }

    fn remote_write(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::new(
            b,
            id.to_string(),
            quoted_id(b),
            &["external_labels"],
            &["endpoint"],
        )?;
        let endpoints = r.blocks("endpoint");
        if endpoints.is_empty() {
            return Err(Error::at(
                b.pos,
                format!("{id}.endpoint"),
                "prometheus.remote_write needs an `endpoint { url = ... }` block",
            ));
        }
        let mut exporters = Vec::new();
        for e in endpoints {
            let ep = r.child(
                e,
                &[
                    "url",
                    "name",
                    "remote_timeout",
                    "headers",
                    "bearer_token",
                    "send_exemplars",
                    "send_native_histograms",
                ],
                &[
                    "basic_auth",
                    "tls_config",
                    "queue_config",
                    "metadata_config",
                ],
            )?;
            let mut body = Table::default();
            let mut notes = Vec::new();
            let url = ep.required("url")?;
            self.set_str(&mut body, "url", &ep, url)?;
            if let Some(a) = ep.attr("name") {
                ep.str_of(a)?;
            }
            Self::copy_bools(
                &mut body,
                &ep,
                &[
                    ("send_exemplars", "send_exemplars"),
                    ("send_native_histograms", "send_native_histograms"),
                ],
            )?;
            self.http_client(&mut body, &ep)?;
            if let Some(a) = r.attr("external_labels") {
                self.set_map(&mut body, "external_labels", &r, a)?;
            }
            if let Some(q) = ep.block(
                "queue_config",
                &[
                    "capacity",
                    "max_shards",
                    "min_shards",
                    "max_samples_per_send",
                    "batch_send_deadline",
                    "min_backoff",
                    "max_backoff",
                    "retry_on_http_429",
                    "sample_age_limit",
                ],
                &[],
            )? {
                if let Some(a) = q.attr("max_shards") {
                    body.set("shards", q.int_of(a)?.to_string(), q.origin(a));
                }
                let mut retry = Table::default();
                for (from, to) in [
                    ("min_backoff", "initial_interval"),
                    ("max_backoff", "max_interval"),
                ] {
                    if let Some(a) = q.attr(from) {
                        self.set_str(&mut retry, to, &q, a)?;
                    }
                }
                if let Some(a) = q.attr("sample_age_limit") {
                    let s = q.str_of(a)?;
                    if !matches!(s.literal().as_deref(), Some("0" | "0s")) {
                        let v = self.render(&s, a.value_pos);
                        retry.set("max_age", v, q.origin(a));
                    }
                }
                if !retry.is_empty() {
                    *body.table("retry", q.here()) = retry;
                }
                let mut ignored = Vec::new();
                for n in [
                    "capacity",
                    "min_shards",
                    "max_samples_per_send",
                    "batch_send_deadline",
                    "retry_on_http_429",
                ] {
                    if let Some(a) = q.attr(n) {
                        if n == "retry_on_http_429" {
                            q.bool_of(a)?;
                        } else if n == "batch_send_deadline" {
                            q.str_of(a)?;
                        } else {
                            q.int_of(a)?;
                        }
                        ignored.push(n);
                    }
                }
                if !ignored.is_empty() {
                    notes.push(format!(
                        "queue_config {}: not applicable; the disk spool queues and the pipeline's batch processor sizes requests",
                        ignored.join(", ")
                    ));
                }
            }
            if let Some(md) = ep.block(
                "metadata_config",
                &["send", "send_interval", "max_samples_per_send"],
                &[],
            )? {
                Self::copy_bools(&mut body, &md, &[("send", "send_metadata")])?;
                if md.attr("send_interval").is_some() || md.attr("max_samples_per_send").is_some() {
                    notes.push("metadata_config send_interval/max_samples_per_send: Sluice sends metadata with each request".into());
                }
            }
            let c = self.add_comp(b, "exporters", "prometheus_remote_write", body);
            self.comps[c].notes = notes;
            self.comps[c].origin = ep.here();
            self.comps[c].source = format!("{} > endpoint", quoted_id(b));
            exporters.push(c);
        }
        Ok(Node::RemoteWrite { exporters })
    }

    fn loki_write(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::new(
            b,
            id.to_string(),
            quoted_id(b),
            &["external_labels"],
            &["endpoint"],
        )?;
        let endpoints = r.blocks("endpoint");
        if endpoints.is_empty() {
            return Err(Error::at(
                b.pos,
                format!("{id}.endpoint"),
                "loki.write needs an `endpoint { url = ... }` block",
            ));
        }
        let mut exporters = Vec::new();
        for e in endpoints {
            let ep = r.child(
                e,
                &[
                    "url",
                    "name",
                    "tenant_id",
                    "headers",
                    "bearer_token",
                    "remote_timeout",
                ],
                &["basic_auth", "tls_config"],
            )?;
            let mut body = Table::default();
            let url = ep.required("url")?;
            self.set_str(&mut body, "url", &ep, url)?;
            if let Some(a) = ep.attr("name") {
                ep.str_of(a)?;
            }
            self.copy_strs(&mut body, &ep, &["tenant_id"])?;
            self.http_client(&mut body, &ep)?;
            if let Some(a) = r.attr("external_labels") {
                self.set_map(&mut body, "external_labels", &r, a)?;
            }
            let c = self.add_comp(b, "exporters", "loki", body);
            self.comps[c].origin = ep.here();
            self.comps[c].source = format!("{} > endpoint", quoted_id(b));
            exporters.push(c);
        }
        Ok(Node::LokiWrite { exporters })
    }

    // -----------------------------------------------------------------------------------------
    // Routes and pipelines.

    fn node(&self, t: &Target) -> Result<&Node, Error> {
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

    /// The remote-write exporters a `prometheus.scrape` forwards to (no processors: Alloy's
    /// Prometheus components go straight to `prometheus.remote_write`).
    fn prometheus_routes(&self, t: &Target) -> Result<Vec<(Vec<String>, String)>, Error> {
        match self.node(t)? {
            Node::RemoteWrite { exporters } => Ok(exporters
                .iter()
                .map(|e| (Vec::new(), self.comps[*e].name.clone()))
                .collect()),
            _ => Err(Error::at(
                t.pos,
                t.component.clone(),
                format!(
                    "prometheus.scrape's forward_to takes prometheus.remote_write receivers; `{}` is not one",
                    t.component
                ),
            )),
        }
    }

    /// `prometheus.scrape` → a `prometheus_scrape` receiver. `targets` is a list of objects
    /// holding `__address__` and other labels; each becomes one `static_configs` entry.
    fn scrape(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::new(
            b,
            id.to_string(),
            quoted_id(b),
            &[
                "targets",
                "forward_to",
                "job_name",
                "scrape_interval",
                "scrape_timeout",
                "metrics_path",
                "scheme",
                "honor_labels",
                "honor_timestamps",
                "bearer_token",
            ],
            &["basic_auth"],
        )?;
        let mut body = Table::default();
        let targets = r.required("targets")?;
        let Value::Array(items) = &targets.value else {
            return Err(r.type_error(
                targets,
                "a list of objects, e.g. [{\"__address__\" = \"localhost:9100\"}]",
            ));
        };
        let mut groups = Vec::new();
        for item in items {
            let Value::Object(fields) = item else {
                return Err(r.type_error(targets, "a list of objects with `__address__`"));
            };
            let mut address = None;
            let mut labels = Vec::new();
            for (k, v) in fields {
                let Value::Str(text) = v else {
                    return Err(r.type_error(targets, "objects of string values"));
                };
                let rendered = self.render(text, targets.value_pos);
                if k == "__address__" {
                    address = Some(rendered);
                } else {
                    labels.push(format!("{} = {rendered}", toml_key(k)));
                }
            }
            let address = address.ok_or_else(|| {
                Error::at(
                    targets.value_pos,
                    format!("{id}.targets"),
                    "every target needs `__address__` (host:port)",
                )
            })?;
            groups.push(format!(
                "{{ targets = [{address}], labels = {{ {} }} }}",
                labels.join(", ")
            ));
        }
        body.set(
            "static_configs",
            format!("[{}]", groups.join(", ")),
            r.origin(targets),
        );
        let forward = r.exports_of(r.required("forward_to")?)?;
        match r.attr("job_name") {
            Some(a) => self.set_str(&mut body, "job_name", &r, a)?,
            // Alloy's default job label is the component's name.
            None => body.set("job_name", toml_string(id), r.here()),
        }
        self.copy_strs(
            &mut body,
            &r,
            &[
                "scrape_interval",
                "scrape_timeout",
                "metrics_path",
                "scheme",
                "bearer_token",
            ],
        )?;
        Self::copy_bools(
            &mut body,
            &r,
            &[
                ("honor_labels", "honor_labels"),
                ("honor_timestamps", "honor_timestamps"),
            ],
        )?;
        if let Some(ba) = r.block("basic_auth", &["username", "password"], &[])? {
            let t = body.table("basic_auth", ba.here());
            self.copy_strs(t, &ba, &["username", "password"])?;
        }
        let c = self.add_comp(b, "receivers", "prometheus_scrape", body);
        Ok(Node::PromReceiver {
            name: self.comps[c].name.clone(),
            forward,
            pos: b.pos,
            key: id.to_string(),
        })
    }

    /// Sluice exporters reached from `t` for `signal`, each with the processors on the way
    /// (in order; the batch processor among them).
    fn routes(
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
            Node::RemoteWrite { .. } | Node::LokiWrite { .. } => {
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
            Node::Receiver { .. } | Node::PromReceiver { .. } | Node::Auth { .. } => {
                // `node()` already refused these: their exports are not `input`.
                return Err(Error::at(t.pos, t.component.clone(), "not a data consumer"));
            }
        }
        Ok(out)
    }

    /// Options of `otelcol.exporter.prometheus` land on the remote-write exporters it feeds.
    fn apply_converter_options(&mut self) -> Result<(), Error> {
        for id in self.order.clone() {
            let Some(Node::PromConverter { forward }) = self.nodes.get(&id) else {
                continue;
            };
            let Some(b) = self.blocks.get(&id) else {
                continue;
            };
            let mut targets = Vec::new();
            for f in forward {
                match self.node(f)? {
                    Node::RemoteWrite { exporters } => targets.extend(exporters.iter().copied()),
                    _ => {
                        return Err(Error::at(
                            f.pos,
                            f.component.clone(),
                            format!(
                                "{id}'s forward_to takes prometheus.remote_write receivers; `{}` is not one",
                                f.component
                            ),
                        ));
                    }
                }
            }
            for a in &b.attrs {
                let Value::Bool(v) = a.value else { continue };
                for c in &targets {
                    let comp = &mut self.comps[*c];
                    if let Some((_, prev, from)) =
                        comp.applied.iter().find(|(k, _, _)| *k == a.name)
                        && *prev != v.to_string()
                    {
                        return Err(Error::at(
                            a.pos,
                            format!("{id}.{}", a.name),
                            format!(
                                "{} is fed by {from} with {} = {prev} and by {id} with {v}; Sluice applies one setting per remote_write endpoint",
                                comp.source, a.name
                            ),
                        ));
                    }
                    comp.applied
                        .push((a.name.clone(), v.to_string(), id.clone()));
                    comp.body.set(
                        &a.name,
                        v.to_string(),
                        Origin {
                            pos: a.pos,
                            key: format!("{id}.{}", a.name),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Converted, Error> {
        self.apply_converter_options()?;
        // (signal, processors) → receiver → exporters, with the origin of the first route.
        struct Group {
            signal: usize,
            procs: Vec<String>,
            receivers: Vec<(String, BTreeSet<String>, Origin)>,
        }
        let mut groups: Vec<Group> = Vec::new();
        let mut descriptions: HashMap<(usize, String), Vec<String>> = HashMap::new();
        for id in &self.order {
            let prom_outputs;
            let (name, outputs, prometheus) = match self.nodes.get(id) {
                Some(Node::Receiver { name, outputs }) => (name, outputs, false),
                Some(Node::PromReceiver {
                    name,
                    forward,
                    pos,
                    key,
                }) => {
                    let metrics = SIGNALS.iter().position(|s| *s == "metrics").unwrap_or(1);
                    let mut o = Outputs {
                        pos: [*pos; 3],
                        key: key.clone(),
                        ..Default::default()
                    };
                    o.by_signal[metrics] = forward.clone();
                    prom_outputs = o;
                    (name, &prom_outputs, true)
                }
                _ => continue,
            };
            for (signal, targets) in outputs.by_signal.iter().enumerate() {
                let origin = Origin {
                    pos: outputs.pos[signal],
                    key: format!("{}.{}", outputs.key, SIGNALS[signal]),
                };
                for t in targets {
                    let mut stack = vec![id.clone()];
                    let routes = if prometheus {
                        self.prometheus_routes(t)?
                    } else {
                        self.routes(t, signal, Vec::new(), &mut stack)?
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

    fn line_col(&self, pos: usize) -> (usize, usize) {
        crate::line_col(self.text, pos)
    }
}
