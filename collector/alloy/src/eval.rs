//! Evaluation of expressions into values. Strings keep `env()` lookups symbolic where TOML's
//! `${VAR:-default}` can express them, so `sluice convert` output reads the environment when it
//! runs, as Alloy does; anything else that needs an environment value (e.g. `json_decode`)
//! reads it now and records that it did.

use crate::Error;
use crate::parser::{Block, Expr, ExprKind, Stmt};

pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    Lit(String),
    /// `env(name)`, or `coalesce(env(name), default)` when `default` is a literal.
    Env {
        name: String,
        default: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Str(pub Vec<Piece>);

impl Str {
    pub fn lit(s: impl Into<String>) -> Str {
        Str(vec![Piece::Lit(s.into())])
    }

    /// The text when no environment variable is involved.
    pub fn literal(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Env { .. } => return None,
            }
        }
        Some(out)
    }

    fn concat(mut self, other: Str) -> Str {
        self.0.extend(other.0);
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Str),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
    /// An export of a component: `otelcol.processor.batch.default.input`.
    Export {
        component: String,
        export: String,
    },
    Func(&'static str),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
            Value::Export { .. } => "component export",
            Value::Func(_) => "function",
        }
    }
}

/// A component or nested block after evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct EBlock {
    pub name: String,
    pub label: Option<String>,
    pub pos: usize,
    pub attrs: Vec<EAttr>,
    pub blocks: Vec<EBlock>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EAttr {
    pub name: String,
    pub pos: usize,
    pub value: Value,
    pub value_pos: usize,
}

pub struct Evaluator<'a> {
    pub env: EnvLookup<'a>,
    /// Ids (`name.label`) of the file's components, for references.
    pub components: Vec<String>,
    /// Environment variables read at evaluation time: (position, name).
    pub baked: Vec<(usize, String)>,
}

const FUNCTIONS: &str =
    "env, sys.env, coalesce, concat (array.concat), json_decode (encoding.from_json)";

fn function(name: &str) -> Option<&'static str> {
    match name {
        "env" | "sys.env" => Some("env"),
        "coalesce" => Some("coalesce"),
        "concat" | "array.concat" => Some("concat"),
        "json_decode" | "encoding.from_json" => Some("json_decode"),
        _ => None,
    }
}

fn path_of(e: &Expr) -> Option<Vec<String>> {
    match &e.kind {
        ExprKind::Ident(s) => Some(vec![s.clone()]),
        ExprKind::Access(inner, f) => {
            let mut p = path_of(inner)?;
            p.push(f.clone());
            Some(p)
        }
        _ => None,
    }
}

impl Evaluator<'_> {
    pub fn block(&mut self, b: &Block) -> Result<EBlock, Error> {
        let mut attrs: Vec<EAttr> = Vec::new();
        let mut blocks = Vec::new();
        for s in &b.body {
            match s {
                Stmt::Attr(a) => {
                    if attrs.iter().any(|x| x.name == a.name) {
                        return Err(Error::at(
                            a.pos,
                            a.name.clone(),
                            format!("attribute `{}` is set twice in this block", a.name),
                        ));
                    }
                    let value = self.eval(&a.value)?;
                    attrs.push(EAttr {
                        name: a.name.clone(),
                        pos: a.pos,
                        value,
                        value_pos: a.value.pos,
                    });
                }
                Stmt::Block(inner) => blocks.push(self.block(inner)?),
            }
        }
        Ok(EBlock {
            name: b.full_name(),
            label: b.label.clone(),
            pos: b.pos,
            attrs,
            blocks,
        })
    }

    /// The text of a string, reading the environment variables it refers to now.
    pub fn resolve(&mut self, s: &Str, pos: usize) -> String {
        let mut out = String::new();
        for p in &s.0 {
            match p {
                Piece::Lit(l) => out.push_str(l),
                Piece::Env { name, default } => {
                    self.baked.push((pos, name.clone()));
                    match (self.env)(name).filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(&v),
                        None => out.push_str(default),
                    }
                }
            }
        }
        out
    }

    pub fn eval(&mut self, e: &Expr) -> Result<Value, Error> {
        Ok(match &e.kind {
            ExprKind::Null => Value::Null,
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Int(i) => Value::Int(*i),
            ExprKind::Float(f) => Value::Float(*f),
            ExprKind::Str(s) => Value::Str(Str::lit(s.clone())),
            ExprKind::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            ),
            ExprKind::Object(fields) => {
                let mut out: Vec<(String, Value)> = Vec::new();
                for (k, at, v) in fields {
                    if out.iter().any(|(x, _)| x == k) {
                        return Err(Error::syntax(*at, format!("object key {k:?} is set twice")));
                    }
                    out.push((k.clone(), self.eval(v)?));
                }
                Value::Object(out)
            }
            ExprKind::Ident(_) | ExprKind::Access(..) => self.reference(e)?,
            ExprKind::Index(target, idx) => {
                let t = self.eval(target)?;
                let i = self.eval(idx)?;
                match (t, i) {
                    (Value::Array(items), Value::Int(n)) => usize::try_from(n)
                        .ok()
                        .and_then(|n| items.get(n).cloned())
                        .ok_or_else(|| {
                            Error::syntax(
                                idx.pos,
                                format!(
                                    "index {n} is out of range (the array has {} items)",
                                    items.len()
                                ),
                            )
                        })?,
                    (Value::Object(fields), Value::Str(k)) => {
                        let key = self.resolve(&k, idx.pos);
                        fields
                            .into_iter()
                            .find(|(f, _)| *f == key)
                            .map_or(Value::Null, |(_, v)| v)
                    }
                    (t, i) => {
                        return Err(Error::syntax(
                            idx.pos,
                            format!("cannot index a {} with a {}", t.type_name(), i.type_name()),
                        ));
                    }
                }
            }
            ExprKind::Call(callee, args) => {
                if let Some(path) = path_of(callee)
                    && function(&path.join(".")).is_none()
                {
                    return Err(Error::syntax(
                        callee.pos,
                        format!(
                            "unknown function `{}`; Sluice supports {FUNCTIONS}",
                            path.join(".")
                        ),
                    ));
                }
                let f = match self.eval(callee)? {
                    Value::Func(f) => f,
                    other => {
                        return Err(Error::syntax(
                            callee.pos,
                            format!(
                                "a {} cannot be called; functions: {FUNCTIONS}",
                                other.type_name()
                            ),
                        ));
                    }
                };
                let vals = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                self.call(f, e.pos, args, vals)?
            }
            ExprKind::Unary(op, inner) => match (*op, self.eval(inner)?) {
                ("!", Value::Bool(b)) => Value::Bool(!b),
                ("-", Value::Int(i)) => Value::Int(
                    i.checked_neg()
                        .ok_or_else(|| Error::syntax(e.pos, "integer overflow in unary -"))?,
                ),
                ("-", Value::Float(f)) => Value::Float(-f),
                (op, v) => {
                    return Err(Error::syntax(
                        e.pos,
                        format!("operator {op} cannot apply to a {}", v.type_name()),
                    ));
                }
            },
            ExprKind::Binary(op, l, r) => {
                let a = self.eval(l)?;
                let b = self.eval(r)?;
                self.binary(op, e.pos, a, b)?
            }
        })
    }

    fn reference(&mut self, e: &Expr) -> Result<Value, Error> {
        if let Some(path) = path_of(e) {
            let joined = path.join(".");
            if let Some(f) = function(&joined) {
                return Ok(Value::Func(f));
            }
            if let Some((last, head)) = path.split_last() {
                let id = head.join(".");
                if self.components.contains(&id) {
                    return Ok(Value::Export {
                        component: id,
                        export: last.clone(),
                    });
                }
            }
            if path.len() == 1 {
                return Err(Error::syntax(
                    e.pos,
                    format!(
                        "unknown identifier `{joined}` (functions: {FUNCTIONS}; strings need quotes)"
                    ),
                ));
            }
        }
        if let ExprKind::Access(inner, field) = &e.kind
            && path_of(inner).is_none()
        {
            return match self.eval(inner)? {
                Value::Object(fields) => Ok(fields
                    .into_iter()
                    .find(|(f, _)| f == field)
                    .map_or(Value::Null, |(_, v)| v)),
                v => Err(Error::syntax(
                    e.pos,
                    format!("a {} has no field `{field}`", v.type_name()),
                )),
            };
        }
        let joined = path_of(e).unwrap_or_default().join(".");
        Err(Error::syntax(
            e.pos,
            format!(
                "`{joined}` refers to no component in this file (a reference is NAME.LABEL.EXPORT of a declared component, e.g. otelcol.processor.batch.default.input)"
            ),
        ))
    }

    fn call(
        &mut self,
        f: &'static str,
        pos: usize,
        args: &[Expr],
        vals: Vec<Value>,
    ) -> Result<Value, Error> {
        let arg_pos = |i: usize| args.get(i).map_or(pos, |a| a.pos);
        match f {
            "env" => {
                let [Value::Str(name)] = vals.as_slice() else {
                    return Err(Error::syntax(
                        pos,
                        "env() takes one string: the variable name",
                    ));
                };
                let name = self.resolve(name, arg_pos(0));
                Ok(Value::Str(Str(vec![Piece::Env {
                    name,
                    default: String::new(),
                }])))
            }
            "concat" => {
                let mut out = Vec::new();
                for (i, v) in vals.into_iter().enumerate() {
                    match v {
                        Value::Array(items) => out.extend(items),
                        other => {
                            return Err(Error::syntax(
                                arg_pos(i),
                                format!("concat() takes arrays, got a {}", other.type_name()),
                            ));
                        }
                    }
                }
                Ok(Value::Array(out))
            }
            "json_decode" => {
                let [Value::Str(s)] = vals.as_slice() else {
                    return Err(Error::syntax(pos, "json_decode() takes one string"));
                };
                let text = self.resolve(s, arg_pos(0));
                let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    Error::syntax(arg_pos(0), format!("json_decode(): invalid JSON: {e}"))
                })?;
                Ok(from_json(json))
            }
            _ => self.coalesce(pos, &vals),
        }
    }

    /// The first argument that is not null or empty; a single `env("X")` followed by a literal
    /// string stays symbolic (`${X:-literal}`).
    fn coalesce(&mut self, pos: usize, vals: &[Value]) -> Result<Value, Error> {
        for (i, v) in vals.iter().enumerate() {
            match v {
                Value::Str(s) => {
                    if let [Piece::Env { name, default }] = s.0.as_slice()
                        && default.is_empty()
                        && i + 1 < vals.len()
                        && let Value::Str(rest) = self.coalesce(pos, &vals[i + 1..])?
                        && let Some(lit) = rest.literal()
                        && !lit.contains('}')
                        && !lit.contains('$')
                    {
                        return Ok(Value::Str(Str(vec![Piece::Env {
                            name: name.clone(),
                            default: lit,
                        }])));
                    }
                    let text = self.resolve(s, pos);
                    if !text.is_empty() {
                        return Ok(if s.literal().is_some() {
                            v.clone()
                        } else {
                            Value::Str(Str::lit(text))
                        });
                    }
                }
                Value::Null => {}
                Value::Array(a) if a.is_empty() => {}
                Value::Object(o) if o.is_empty() => {}
                other => return Ok(other.clone()),
            }
        }
        Ok(vals.last().cloned().unwrap_or(Value::Null))
    }

    fn binary(&mut self, op: &str, pos: usize, a: Value, b: Value) -> Result<Value, Error> {
        use Value::*;
        let num = |v: &Value| match v {
            Int(i) => Some(*i as f64),
            Float(f) => Some(*f),
            _ => None,
        };
        let err = |a: &Value, b: &Value| {
            Error::syntax(
                pos,
                format!(
                    "operator {op} cannot apply to a {} and a {}",
                    a.type_name(),
                    b.type_name()
                ),
            )
        };
        Ok(match (op, &a, &b) {
            ("+", Str(x), Str(y)) => Str(x.clone().concat(y.clone())),
            ("&&", Bool(x), Bool(y)) => Bool(*x && *y),
            ("||", Bool(x), Bool(y)) => Bool(*x || *y),
            ("==" | "!=", _, _) => {
                let eq = match (&a, &b) {
                    (Str(x), Str(y)) => self.resolve(x, pos) == self.resolve(y, pos),
                    _ if num(&a).is_some() && num(&b).is_some() => num(&a) == num(&b),
                    _ => a == b,
                };
                Bool(if op == "==" { eq } else { !eq })
            }
            (_, Int(x), Int(y)) if matches!(op, "+" | "-" | "*" | "%" | "/") => match op {
                "+" => x.checked_add(*y).map(Int),
                "-" => x.checked_sub(*y).map(Int),
                "*" => x.checked_mul(*y).map(Int),
                "%" => x.checked_rem(*y).map(Int),
                _ => (*y != 0).then(|| Float(*x as f64 / *y as f64)),
            }
            .ok_or_else(|| {
                Error::syntax(pos, format!("integer overflow or division by zero in {op}"))
            })?,
            _ => {
                let (Some(x), Some(y)) = (num(&a), num(&b)) else {
                    if let (Str(x), Str(y)) = (&a, &b)
                        && matches!(op, "<" | "<=" | ">" | ">=")
                    {
                        let (x, y) = (self.resolve(x, pos), self.resolve(y, pos));
                        return Ok(Bool(compare(op, x.cmp(&y))));
                    }
                    return Err(err(&a, &b));
                };
                match op {
                    "+" => Float(x + y),
                    "-" => Float(x - y),
                    "*" => Float(x * y),
                    "/" => Float(x / y),
                    "%" => Float(x % y),
                    "^" => Float(x.powf(y)),
                    _ => Bool(compare(op, x.partial_cmp(&y).ok_or_else(|| err(&a, &b))?)),
                }
            }
        })
    }
}

fn compare(op: &str, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    matches!(
        (op, o),
        ("<", Less) | ("<=", Less | Equal) | (">", Greater) | (">=", Greater | Equal)
    )
}

fn from_json(v: serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(Str::lit(s)),
        serde_json::Value::Array(a) => Value::Array(a.into_iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, from_json(v))).collect())
        }
    }
}
