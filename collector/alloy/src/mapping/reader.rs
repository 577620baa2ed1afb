//! Reading one Alloy block strictly: attributes and blocks outside the supported lists are
//! refused with the list, and typed getters name the Alloy key of a wrong value.

use super::Origin;
use super::graph::Target;
use crate::Error;
use crate::eval::{EAttr, EBlock, Str, Value};

/// One Alloy block being mapped; refuses attributes and blocks not in its supported lists.
pub(super) struct Reader<'b> {
    pub(super) b: &'b EBlock,
    /// `otelcol.exporter.otlp.tempo.client`
    pub(super) key: String,
    /// `otelcol.exporter.otlp "tempo" > client`
    pub(super) what: String,
}

impl<'b> Reader<'b> {
    /// A component block, named by its id (`otelcol.exporter.otlp.tempo`).
    pub(super) fn component(
        b: &'b EBlock,
        id: &str,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Result<Reader<'b>, Error> {
        Reader::new(b, id.to_string(), super::quoted_id(b), attrs, blocks)
    }

    /// A writer component (`loki.write`, `prometheus.remote_write`): its `external_labels`
    /// and its `endpoint { url = ... }` blocks, of which it needs at least one.
    pub(super) fn writer(
        b: &'b EBlock,
        id: &str,
        component: &str,
    ) -> Result<(Reader<'b>, Vec<&'b EBlock>), Error> {
        let r = Reader::component(b, id, &["external_labels"], &["endpoint"])?;
        let endpoints = r.blocks("endpoint");
        if endpoints.is_empty() {
            return Err(Error::at(
                b.pos,
                format!("{id}.endpoint"),
                format!("{component} needs an `endpoint {{ url = ... }}` block"),
            ));
        }
        Ok((r, endpoints))
    }

    pub(super) fn new(
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

    pub(super) fn attr(&self, name: &str) -> Option<&'b EAttr> {
        self.b.attrs.iter().find(|a| a.name == name)
    }

    pub(super) fn origin(&self, a: &EAttr) -> Origin {
        Origin {
            pos: a.pos,
            key: format!("{}.{}", self.key, a.name),
        }
    }

    pub(super) fn here(&self) -> Origin {
        Origin {
            pos: self.b.pos,
            key: self.key.clone(),
        }
    }

    pub(super) fn origin_of_block(&self, b: &EBlock) -> Origin {
        Origin {
            pos: b.pos,
            key: format!("{}.{}", self.key, b.name),
        }
    }

    pub(super) fn blocks(&self, name: &str) -> Vec<&'b EBlock> {
        self.b.blocks.iter().filter(|b| b.name == name).collect()
    }

    /// At most one `name { }` block.
    pub(super) fn block(
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

    pub(super) fn child(
        &self,
        b: &'b EBlock,
        attrs: &[&str],
        blocks: &[&str],
    ) -> Result<Reader<'b>, Error> {
        Reader::new(
            b,
            format!("{}.{}", self.key, b.name),
            format!("{} > {}", self.what, b.name),
            attrs,
            blocks,
        )
    }

    pub(super) fn required(&self, name: &str) -> Result<&'b EAttr, Error> {
        self.attr(name).ok_or_else(|| {
            Error::at(
                self.b.pos,
                format!("{}.{name}", self.key),
                format!("{} needs the attribute `{name}`", self.what),
            )
        })
    }

    pub(super) fn type_error(&self, a: &EAttr, want: &str) -> Error {
        Error::at(
            a.value_pos,
            format!("{}.{}", self.key, a.name),
            format!("`{}` must be {want}, got a {}", a.name, a.value.type_name()),
        )
    }

    pub(super) fn str_of(&self, a: &EAttr) -> Result<Str, Error> {
        match &a.value {
            Value::Str(s) => Ok(s.clone()),
            _ => Err(self.type_error(a, "a string")),
        }
    }

    pub(super) fn bool_of(&self, a: &EAttr) -> Result<bool, Error> {
        match a.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.type_error(a, "a bool")),
        }
    }

    pub(super) fn int_of(&self, a: &EAttr) -> Result<i64, Error> {
        match a.value {
            Value::Int(i) => Ok(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(f as i64),
            _ => Err(self.type_error(a, "an integer")),
        }
    }

    pub(super) fn float_of(&self, a: &EAttr) -> Result<f64, Error> {
        match a.value {
            Value::Int(i) => Ok(i as f64),
            Value::Float(f) => Ok(f),
            _ => Err(self.type_error(a, "a number")),
        }
    }

    pub(super) fn map_of(&self, a: &EAttr) -> Result<Vec<(String, Str)>, Error> {
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
    pub(super) fn exports_of(&self, a: &EAttr) -> Result<Vec<Target>, Error> {
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
