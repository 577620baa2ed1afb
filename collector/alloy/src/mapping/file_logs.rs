//! Log files: `local.file_match` and `loki.source.file` become `file_log` receivers, and the
//! `loki.process` stages that `file_log` does itself (JSON or regex parsing, multi-line joining,
//! labels) are folded into them. The lines reach the `loki.write` exporters as Alloy sends
//! them: the raw line, the targets' labels plus `filename`, none of the OTLP default labels.
//!
//! How the labels travel: each receiver's resource carries the target labels and the
//! `loki.resource.labels` hint naming them, its records the `loki.attribute.labels` hint
//! (`filename`, which `file_log` writes the path to, and the `stage.labels`). The Loki
//! exporters fed by file
//! sources have the OTLP default labels off and write the body as the line; when a
//! `loki.write` is also fed OpenTelemetry data, the file sources get a second exporter for the
//! same endpoint.

use super::graph::{Node, Target};
use super::reader::Reader;
use super::toml_out::{Table, toml_string};
use super::{Mapper, Origin};
use crate::Error;
use crate::eval::{EAttr, EBlock, Value};
use std::collections::BTreeSet;

/// The `loki.process` stages Sluice folds into `file_log` receivers.
const STAGES: &[&str] = &[
    "stage.multiline",
    "stage.json",
    "stage.regex",
    "stage.labels",
    "stage.static_labels",
];

/// One entry of `path_targets` (or of a literal `targets` list).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PathTarget {
    /// `__path__`, as a TOML string.
    path: String,
    /// `__path_exclude__`, as a TOML string.
    exclude: Option<String>,
    /// The other labels (not `__`-prefixed), values as TOML strings.
    labels: Vec<(String, String)>,
}

/// The targets of one `loki.source.file` that share labels and exclusion: one receiver.
struct ReceiverGroup {
    labels: Vec<(String, String)>,
    exclude: Option<String>,
    /// TOML strings.
    paths: Vec<String>,
}

/// What a `loki.process` component does to the lines of the files feeding it.
#[derive(Debug, Clone, Default)]
pub(super) struct Stages {
    /// `format`, `regex` and the `multiline` table of the `file_log` receiver.
    body: Table,
    /// `stage.static_labels`: (name, TOML string).
    static_labels: Vec<(String, String, Origin)>,
    /// `stage.labels`: record attributes promoted to labels.
    attribute_labels: Vec<String>,
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Mapper<'_> {
    /// `local.file_match`: its targets are read by the `loki.source.file` components that
    /// reference them.
    pub(super) fn file_match(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(
            b,
            id,
            &["path_targets", "sync_period", "ignore_older_than"],
            &[],
        )?;
        let a = r.required("path_targets")?;
        let targets = self.path_targets(&r, a)?;
        let sync_period = self.discovery_settings(&r)?;
        Ok(Node::FileMatch {
            targets,
            sync_period,
        })
    }

    /// `sync_period` (as TOML, for `scan_interval`) and `ignore_older_than` of file discovery
    /// (`local.file_match`, or `loki.source.file`'s `file_match` block).
    fn discovery_settings(&mut self, r: &Reader) -> Result<Option<(String, Origin)>, Error> {
        if let Some(a) = r.attr("ignore_older_than") {
            let s = r.str_of(a)?;
            if !matches!(s.literal().as_deref(), Some("0" | "0s")) {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    "ignore_older_than is not supported by Sluice: its file_log receiver reads every matching file, whatever its age (use __path_exclude__ to leave files out)",
                ));
            }
        }
        match r.attr("sync_period") {
            Some(a) => {
                let s = r.str_of(a)?;
                Ok(Some((self.render(&s, a.value_pos), r.origin(a))))
            }
            None => Ok(None),
        }
    }

    /// A list of objects with `__path__`, optional `__path_exclude__` and labels. Other
    /// `__`-prefixed keys are internal to Alloy, which drops them before sending too.
    fn path_targets(&mut self, r: &Reader, a: &EAttr) -> Result<Vec<PathTarget>, Error> {
        let want =
            "a list of objects, e.g. [{\"__path__\" = \"/var/log/*.log\", \"job\" = \"app\"}]";
        let Value::Array(items) = &a.value else {
            return Err(r.type_error(a, want));
        };
        let key = r.origin(a).key;
        let mut targets = Vec::new();
        for item in items {
            let Value::Object(fields) = item else {
                return Err(r.type_error(a, want));
            };
            let mut path = None;
            let mut exclude = None;
            let mut labels = Vec::new();
            for (k, v) in fields {
                let Value::Str(text) = v else {
                    return Err(Error::at(
                        a.value_pos,
                        format!("{key}.{k}"),
                        format!(
                            "target values must be strings; {k:?} is a {}",
                            v.type_name()
                        ),
                    ));
                };
                let is_pattern = matches!(k.as_str(), "__path__" | "__path_exclude__");
                if is_pattern && text.literal().is_some_and(|p| p.contains('{')) {
                    // doublestar's `{a,b}`: the `glob` patterns of file_log have no alternation.
                    return Err(Error::at(
                        a.value_pos,
                        format!("{key}.{k}"),
                        format!(
                            "{k} {:?}: brace alternation ({{a,b}}) is not supported by Sluice's file_log patterns; write one target per pattern",
                            text.literal().unwrap_or_default()
                        ),
                    ));
                }
                let rendered = self.render(text, a.value_pos);
                match k.as_str() {
                    "__path__" => path = Some(rendered),
                    "__path_exclude__" => exclude = Some(rendered),
                    k if k.starts_with("__") => {}
                    k if is_label_name(k) => labels.push((k.to_string(), rendered)),
                    k => {
                        return Err(Error::at(
                            a.value_pos,
                            format!("{key}.{k}"),
                            format!(
                                "{k:?} is not a valid Loki label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                            ),
                        ));
                    }
                }
            }
            let path = path.ok_or_else(|| {
                Error::at(
                    a.value_pos,
                    key.clone(),
                    "every target needs `__path__` (a file path or glob pattern)",
                )
            })?;
            labels.sort();
            targets.push(PathTarget {
                path,
                exclude,
                labels,
            });
        }
        Ok(targets)
    }

    /// `loki.source.file`: one `file_log` receiver per distinct set of target labels.
    pub(super) fn file_source(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(
            b,
            id,
            &["targets", "forward_to", "tail_from_end", "encoding"],
            &["file_match"],
        )?;
        let targets_attr = r.required("targets")?;
        let (targets, mut sync_period) = match &targets_attr.value {
            Value::Export { component, export } => match self.nodes.get(component) {
                Some(Node::FileMatch {
                    targets,
                    sync_period,
                }) if export == "targets" => (targets.clone(), sync_period.clone()),
                _ => {
                    return Err(Error::at(
                        targets_attr.value_pos,
                        r.origin(targets_attr).key,
                        format!(
                            "`{component}.{export}` is not a list of file targets: use local.file_match.NAME.targets or a list of {{\"__path__\" = ...}} objects"
                        ),
                    ));
                }
            },
            _ => (self.path_targets(&r, targets_attr)?, None),
        };
        // The built-in discovery: Sluice's targets are glob patterns either way.
        if let Some(fm) = r.block(
            "file_match",
            &["enabled", "sync_period", "ignore_older_than"],
            &[],
        )? {
            if let Some(a) = fm.attr("enabled") {
                fm.bool_of(a)?;
            }
            if let Some(period) = self.discovery_settings(&fm)? {
                sync_period = Some(period);
            }
        }
        let targets_origin = r.origin(targets_attr);
        if targets.is_empty() {
            return Err(Error::at(
                targets_attr.value_pos,
                targets_origin.key,
                "no targets: loki.source.file needs at least one {\"__path__\" = ...}",
            ));
        }
        let forward = r.exports_of(r.required("forward_to")?)?;
        let stages = self.file_source_stages(id, &forward)?;
        let (start_at, start_origin) = match r.attr("tail_from_end") {
            Some(a) if r.bool_of(a)? => ("end", r.origin(a)),
            Some(a) => ("beginning", r.origin(a)),
            // Alloy reads a file without a stored position from its beginning.
            None => ("beginning", r.here()),
        };
        if let Some(a) = r.attr("encoding") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            if !matches!(v.to_ascii_lowercase().as_str(), "" | "utf-8" | "utf8") {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    format!("encoding {v:?}: Sluice's file_log receiver reads UTF-8 only"),
                ));
            }
        }

        // Targets with the same labels and exclusion share a receiver.
        let mut groups: Vec<ReceiverGroup> = Vec::new();
        for t in targets {
            match groups
                .iter_mut()
                .find(|g| g.labels == t.labels && g.exclude == t.exclude)
            {
                Some(g) => {
                    if !g.paths.contains(&t.path) {
                        g.paths.push(t.path);
                    }
                }
                None => groups.push(ReceiverGroup {
                    labels: t.labels,
                    exclude: t.exclude,
                    paths: vec![t.path],
                }),
            }
        }
        let mut receivers = Vec::new();
        for ReceiverGroup {
            labels,
            exclude,
            paths,
        } in groups
        {
            let mut body = Table::default();
            body.set(
                "include",
                format!("[{}]", paths.join(", ")),
                targets_origin.clone(),
            );
            if let Some(e) = exclude {
                body.set("exclude", format!("[{e}]"), targets_origin.clone());
            }
            body.set("start_at", toml_string(start_at), start_origin.clone());
            if let Some((v, o)) = &sync_period {
                body.set("scan_interval", v.clone(), o.clone());
            }
            body.set("include_file_name", "false".into(), r.here());
            body.set("include_file_path", "true".into(), r.here());
            body.set("file_path_attribute", toml_string("filename"), r.here());
            if let Some(s) = &stages {
                for (k, v, o) in &s.body.vals {
                    body.set(k, v.clone(), o.clone());
                }
                for (k, t, o) in &s.body.tables {
                    *body.table(k, o.clone()) = t.clone();
                }
            }
            let mut resource = Table::default();
            let mut names = BTreeSet::new();
            for (k, v) in labels {
                resource.set(&k, v, targets_origin.clone());
                names.insert(k);
            }
            for (k, v, o) in stages.iter().flat_map(|s| &s.static_labels) {
                resource.set(k, v.clone(), o.clone());
                names.insert(k.clone());
            }
            if !names.is_empty() {
                let list: Vec<String> = names.into_iter().collect();
                resource.set(
                    "loki.resource.labels",
                    toml_string(&list.join(",")),
                    targets_origin.clone(),
                );
                *body.table("resource", targets_origin.clone()) = resource;
            }
            let mut attribute_labels = vec!["filename".to_string()];
            for l in stages.iter().flat_map(|s| &s.attribute_labels) {
                if !attribute_labels.contains(l) {
                    attribute_labels.push(l.clone());
                }
            }
            body.table("attributes", r.here()).set(
                "loki.attribute.labels",
                toml_string(&attribute_labels.join(",")),
                r.here(),
            );
            let c = self.add_comp(b, "receivers", "file_log", body);
            receivers.push(self.comps[c].name.clone());
        }
        Ok(Node::FileSource {
            receivers,
            forward,
            pos: b.pos,
            key: id.to_string(),
        })
    }

    /// The stages of the `loki.process` a file source forwards to, if it does. A source that
    /// forwards to `loki.process` forwards to it alone: Sluice parses and labels a file's
    /// lines once, in the receiver, for all of its routes.
    fn file_source_stages(&self, id: &str, forward: &[Target]) -> Result<Option<Stages>, Error> {
        let Some(t) = forward
            .iter()
            .find(|t| matches!(self.nodes.get(&t.component), Some(Node::LokiProcess { .. })))
        else {
            return Ok(None);
        };
        if forward.len() > 1 {
            return Err(Error::at(
                t.pos,
                format!("{id}.forward_to"),
                format!(
                    "{id} forwards to {} and to other components: Sluice applies loki.process stages in the file_log receiver, so a loki.source.file that uses loki.process must forward to it alone",
                    t.component
                ),
            ));
        }
        match self.node(t)? {
            Node::LokiProcess { stages, .. } => Ok(Some(stages.clone())),
            _ => Ok(None),
        }
    }

    /// `loki.process` with the stages `file_log` does itself; any other stage is refused by
    /// name.
    pub(super) fn loki_process(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(b, id, &["forward_to"], STAGES)?;
        let forward = r.exports_of(r.required("forward_to")?)?;
        let mut stages = Stages::default();
        let mut parser: Option<&str> = None;
        for inner in &b.blocks {
            let name = inner.name.as_str();
            let here = Origin {
                pos: inner.pos,
                key: format!("{id}.{name}"),
            };
            let refuse = |reason: String| Err(Error::at(inner.pos, here.key.clone(), reason));
            match name {
                "stage.multiline" => {
                    if let Some(p) = parser {
                        return refuse(format!(
                            "stage.multiline must come before {p}: Sluice joins lines before parsing them"
                        ));
                    }
                    if stages.body.tables.iter().any(|(k, _, _)| k == "multiline") {
                        return refuse("stage.multiline may appear only once".into());
                    }
                    let s = r.child(inner, &["firstline", "max_wait_time", "max_lines"], &[])?;
                    let mut t = Table::default();
                    let first = s.required("firstline")?;
                    self.set_str(&mut t, "line_start_pattern", &s, first)?;
                    if let Some(a) = s.attr("max_wait_time") {
                        self.set_str(&mut t, "flush_timeout", &s, a)?;
                    }
                    if let Some(a) = s.attr("max_lines") {
                        let n = s.int_of(a)?;
                        if n == 0 {
                            // Alloy's 0 means no limit; Sluice's file_log always has one.
                            return Err(Error::at(
                                a.value_pos,
                                s.origin(a).key,
                                "max_lines = 0 (no limit) is not supported by Sluice; give a number of lines",
                            ));
                        }
                        t.set("max_lines", n.to_string(), s.origin(a));
                    }
                    *stages.body.table("multiline", here.clone()) = t;
                }
                "stage.json" | "stage.regex" => {
                    if let Some(p) = parser {
                        return refuse(format!(
                            "{name} after {p}: Sluice's file_log receiver parses a line once (one stage.json or stage.regex)"
                        ));
                    }
                    parser = Some(name);
                    if name == "stage.json" {
                        let s = r.child(inner, &["expressions"], &[])?;
                        let a = s.required("expressions")?;
                        for (field, expr) in s.map_of(a)? {
                            let expr = expr.literal().unwrap_or_default();
                            if !expr.is_empty() && expr != field {
                                return Err(Error::at(
                                    a.value_pos,
                                    format!("{}.{field}", s.origin(a).key),
                                    format!(
                                        "JMESPath expression {expr:?}: Sluice's file_log receiver takes a JSON object's top-level fields as they are (use \"\" or {field:?})"
                                    ),
                                ));
                            }
                        }
                        stages.body.set("format", toml_string("json"), s.origin(a));
                    } else {
                        let s = r.child(inner, &["expression"], &[])?;
                        let a = s.required("expression")?;
                        stages.body.set("format", toml_string("regex"), s.origin(a));
                        self.set_str(&mut stages.body, "regex", &s, a)?;
                    }
                }
                "stage.labels" => {
                    let s = r.child(inner, &["values"], &[])?;
                    let a = s.required("values")?;
                    for (label, source) in s.map_of(a)? {
                        let source = source.literal().unwrap_or_default();
                        if !source.is_empty() && source != label {
                            return Err(Error::at(
                                a.value_pos,
                                format!("{}.{label}", s.origin(a).key),
                                format!(
                                    "label {label:?} from field {source:?}: Sluice promotes a parsed field under its own name (use \"\")"
                                ),
                            ));
                        }
                        if !is_label_name(&label) {
                            return Err(Error::at(
                                a.value_pos,
                                format!("{}.{label}", s.origin(a).key),
                                format!("{label:?} is not a valid Loki label name"),
                            ));
                        }
                        if !stages.attribute_labels.contains(&label) {
                            stages.attribute_labels.push(label);
                        }
                    }
                }
                _ => {
                    // `stage.static_labels`; `Reader::component` refused any other stage.
                    let s = r.child(inner, &["values"], &[])?;
                    let a = s.required("values")?;
                    for (label, value) in s.map_of(a)? {
                        if !is_label_name(&label) {
                            return Err(Error::at(
                                a.value_pos,
                                format!("{}.{label}", s.origin(a).key),
                                format!("{label:?} is not a valid Loki label name"),
                            ));
                        }
                        let v = self.render(&value, a.value_pos);
                        stages.static_labels.push((label, v, s.origin(a)));
                    }
                }
            }
        }
        Ok(Node::LokiProcess { forward, stages })
    }

    /// The Loki exporters a file source's `forward_to` target reaches (comp indices), through
    /// one `loki.process`.
    pub(super) fn file_source_exporters(
        &self,
        source: &str,
        t: &Target,
    ) -> Result<Vec<usize>, Error> {
        match self.node(t)? {
            Node::LokiWrite { exporters } => Ok(exporters.clone()),
            Node::LokiProcess { forward, .. } => {
                let mut out = Vec::new();
                for f in forward {
                    match self.node(f)? {
                        Node::LokiWrite { exporters } => out.extend(exporters.iter().copied()),
                        _ => {
                            return Err(Error::at(
                                f.pos,
                                f.component.clone(),
                                format!(
                                    "{}'s forward_to takes loki.write receivers here (Sluice folds one loki.process into the file source); `{}` is not one",
                                    t.component, f.component
                                ),
                            ));
                        }
                    }
                }
                Ok(out)
            }
            _ => Err(Error::at(
                t.pos,
                t.component.clone(),
                format!(
                    "{source}'s forward_to takes loki.write (or loki.process) receivers; `{}` is not one",
                    t.component
                ),
            )),
        }
    }

    /// Gives the Loki exporters fed by file sources Alloy's `loki.source.file` behaviour (no
    /// OTLP default labels, the raw line). An exporter also fed by `otelcol.exporter.loki`
    /// keeps its OTLP behaviour, and the file sources get a copy for the same endpoint.
    pub(super) fn prepare_file_exporters(&mut self) -> Result<(), Error> {
        let mut from_files: Vec<usize> = Vec::new();
        let mut from_otlp: BTreeSet<usize> = BTreeSet::new();
        for id in &self.order {
            match self.nodes.get(id) {
                Some(Node::FileSource { forward, .. }) => {
                    for t in forward {
                        for e in self.file_source_exporters(id, t)? {
                            if !from_files.contains(&e) {
                                from_files.push(e);
                            }
                        }
                    }
                }
                Some(Node::LokiConverter { forward }) => {
                    for f in forward {
                        if let Some(Node::LokiWrite { exporters }) = self.nodes.get(&f.component) {
                            from_otlp.extend(exporters.iter().copied());
                        }
                    }
                }
                _ => {}
            }
        }
        for e in from_files {
            let target = if from_otlp.contains(&e) {
                let mut copy = self.comps[e].clone();
                copy.name = self.alloc_name("exporters", &format!("{}_files", copy.name));
                copy.source = format!("{} (for loki.source.file)", copy.source);
                copy.notes.push(format!(
                    "a second exporter for the endpoint of exporters.{}: the log files' streams carry their own labels and raw lines, OpenTelemetry logs the OTLP default labels",
                    self.comps[e].name
                ));
                self.comps.push(copy);
                self.comps.len() - 1
            } else {
                e
            };
            let comp = &mut self.comps[target];
            let origin = comp.origin.clone();
            comp.body
                .set("line_format", toml_string("raw"), origin.clone());
            let labels = comp.body.table("default_labels_enabled", origin.clone());
            for k in ["exporter", "job", "instance", "level", "service_name"] {
                labels.set(k, "false".into(), origin.clone());
            }
            self.file_exporters.insert(e, target);
        }
        Ok(())
    }
}
