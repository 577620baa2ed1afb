//! Alloy values written as TOML: strings (with `env()` pieces deferred as `${VAR:-default}`),
//! numbers, booleans, lists and string maps.

use super::Mapper;
use super::reader::Reader;
use super::toml_out::{Table, toml_float, toml_string};
use crate::Error;
use crate::eval::{EAttr, Piece, Str, Value};

impl Mapper<'_> {
    /// TOML text of an Alloy string; `env()` pieces become `${VAR:-default}`.
    pub(super) fn render(&mut self, s: &Str, pos: usize) -> String {
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

    pub(super) fn set_str(
        &mut self,
        t: &mut Table,
        key: &str,
        r: &Reader,
        a: &EAttr,
    ) -> Result<(), Error> {
        let s = r.str_of(a)?;
        let v = self.render(&s, a.value_pos);
        t.set(key, v, r.origin(a));
        Ok(())
    }

    /// Copies string attributes that keep their name.
    pub(super) fn copy_strs(
        &mut self,
        t: &mut Table,
        r: &Reader,
        names: &[&str],
    ) -> Result<(), Error> {
        for n in names {
            if let Some(a) = r.attr(n) {
                self.set_str(t, n, r, a)?;
            }
        }
        Ok(())
    }

    pub(super) fn copy_bools(
        t: &mut Table,
        r: &Reader,
        names: &[(&str, &str)],
    ) -> Result<(), Error> {
        for (from, to) in names {
            if let Some(a) = r.attr(from) {
                t.set(to, r.bool_of(a)?.to_string(), r.origin(a));
            }
        }
        Ok(())
    }

    pub(super) fn set_map(
        &mut self,
        t: &mut Table,
        key: &str,
        r: &Reader,
        a: &EAttr,
    ) -> Result<(), Error> {
        let entries = r.map_of(a)?;
        let sub = t.table(key, r.origin(a));
        for (k, v) in entries {
            let rendered = self.render(&v, a.value_pos);
            sub.set(&k, rendered, r.origin(a));
        }
        Ok(())
    }

    /// An attribute value as TOML: strings, numbers, booleans and lists of them.
    pub(super) fn value_toml(&mut self, r: &Reader, a: &EAttr, v: &Value) -> Result<String, Error> {
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
}
