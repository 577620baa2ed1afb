//! A subset of the OpenTelemetry Transformation Language (OTTL), the condition and statement
//! language of the OpenTelemetry Collector's filter and transform processors.
//!
//! Supported: boolean conditions (`and`, `or`, `not`, parentheses), comparisons (`==`, `!=`,
//! `<`, `<=`, `>`, `>=`), arithmetic (`+ - * /`), string/int/float/bool/`nil` literals, enums
//! (`STATUS_CODE_ERROR`, `SPAN_KIND_SERVER`, `SEVERITY_NUMBER_WARN`, `METRIC_DATA_TYPE_SUM`,
//! ...), the converters `IsMatch`, `Len`, `Int`, `Double`, `Concat`, `IsString`, `IsInt`,
//! `IsDouble`, `IsBool`, and the editors `set`, `delete_key`, `delete_matching_keys`,
//! `keep_keys`, `replace_pattern`, `replace_all_patterns`, `truncate_all` with an optional
//! `where` clause. Paths are those of the span, log, metric, datapoint and resource contexts
//! (docs/processors.md lists them). Anything else is refused when the config is loaded.
//!
//! Evaluation never fails: a path that is absent reads as `nil`, and a comparison between
//! values of different kinds is false (`!=` true), as OTTL defines it.

use crate::data;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value as AV,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric::Data, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;

/// Why a condition or statement was refused when the config was loaded.
#[derive(Debug, thiserror::Error)]
pub enum OttlError {
    #[error("bad number {0}")]
    BadNumber(String),
    #[error("unterminated string")]
    UnterminatedString,
    #[error("unexpected character {0:?}")]
    UnexpectedChar(char),
    #[error("expected `{expected}`, found {found}")]
    Expected { expected: String, found: String },
    /// A token (or the end) where an expression was expected.
    #[error("unexpected {0}")]
    Unexpected(String),
    #[error("unexpected {0} after the expression")]
    Trailing(String),
    #[error("unknown enum {0}")]
    UnknownEnum(String),
    #[error(
        "unknown path {path:?} in the {context} context (see docs/processors.md for the paths Sluice supports)"
    )]
    UnknownPath { path: String, context: &'static str },
    #[error("path {0} cannot be indexed with [\"...\"]")]
    NotAMap(String),
    /// Any other malformed construct, described.
    #[error("{0}")]
    Syntax(String),
    #[error("{func} takes {expected} argument(s), got {got}")]
    Arity {
        func: String,
        expected: usize,
        got: usize,
    },
    /// A function's argument of the wrong form.
    #[error("{func}: {problem}")]
    Argument { func: String, problem: String },
    #[error("{func}: invalid regular expression {pattern:?}: {source}")]
    Regex {
        func: String,
        pattern: String,
        source: regex::Error,
    },
    #[error(
        "unsupported function {0}; Sluice supports IsMatch, Len, Int, Double, Concat, IsString, IsInt, IsDouble, IsBool"
    )]
    UnsupportedFunction(String),
    #[error(
        "unsupported editor {0}; Sluice supports set, delete_key, delete_matching_keys, keep_keys, replace_pattern, replace_all_patterns, truncate_all"
    )]
    UnsupportedEditor(String),
}

impl OttlError {
    fn argument(func: &str, problem: impl Into<String>) -> OttlError {
        OttlError::Argument {
            func: func.to_owned(),
            problem: problem.into(),
        }
    }
}

/// What a condition or statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    Resource,
    Span,
    Metric,
    DataPoint,
    Log,
}

impl ContextKind {
    pub fn name(self) -> &'static str {
        match self {
            ContextKind::Resource => "resource",
            ContextKind::Span => "span",
            ContextKind::Metric => "metric",
            ContextKind::DataPoint => "datapoint",
            ContextKind::Log => "log",
        }
    }
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Nil,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Arrays and maps: only compared for equality.
    Other(AnyValue),
    List(Vec<Val>),
}

impl Val {
    fn from_any(v: Option<&AnyValue>) -> Val {
        match v.and_then(|v| v.value.as_ref()) {
            None => Val::Nil,
            Some(AV::StringValue(s)) => Val::Str(s.clone()),
            Some(AV::BoolValue(b)) => Val::Bool(*b),
            Some(AV::IntValue(i)) => Val::Int(*i),
            Some(AV::DoubleValue(d)) => Val::Double(*d),
            Some(AV::BytesValue(b)) => Val::Bytes(b.clone()),
            Some(other) => Val::Other(AnyValue {
                value: Some(other.clone()),
            }),
        }
    }

    fn to_any(&self) -> Option<AnyValue> {
        let v = match self {
            Val::Nil | Val::List(_) => return None,
            Val::Bool(b) => AV::BoolValue(*b),
            Val::Int(i) => AV::IntValue(*i),
            Val::Double(d) => AV::DoubleValue(*d),
            Val::Str(s) => AV::StringValue(s.clone()),
            Val::Bytes(b) => AV::BytesValue(b.clone()),
            Val::Other(a) => return Some(a.clone()),
        };
        Some(AnyValue { value: Some(v) })
    }

    fn text(&self) -> Option<String> {
        match self {
            Val::Str(s) => Some(s.clone()),
            Val::Int(i) => Some(i.to_string()),
            Val::Double(d) => Some(d.to_string()),
            Val::Bool(b) => Some(b.to_string()),
            Val::Bytes(b) => Some(hex::encode(b)),
            Val::Other(a) => Some(data::value_text(a)),
            Val::Nil | Val::List(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    Attributes(Option<String>),
    ResourceAttributes(Option<String>),
    ScopeName,
    ScopeVersion,
    ScopeAttributes(Option<String>),
    // span
    Name,
    Kind,
    StatusCode,
    StatusMessage,
    StartTime,
    EndTime,
    TraceId,
    SpanId,
    ParentSpanId,
    TraceState,
    // log
    Body,
    SeverityNumber,
    SeverityText,
    Time,
    ObservedTime,
    // metric
    Description,
    Unit,
    MetricType,
    // datapoint
    MetricName,
    MetricUnit,
    MetricTypeOfPoint,
    ValueInt,
    ValueDouble,
    Count,
    Sum,
}

impl Path {
    /// Parses a dotted path (already split) for `ctx`; `key` is a `["..."]` suffix.
    fn parse(ctx: ContextKind, parts: &[String], key: Option<String>) -> Result<Path, OttlError> {
        use ContextKind as C;
        let mut parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        // Context-qualified paths (`span.name`, `log.body`) mean the same as bare ones.
        if parts.len() > 1 && parts[0] == ctx.name() {
            parts.remove(0);
        }
        let whole = parts.join(".");
        let keyed = |p: fn(Option<String>) -> Path| Ok(p(key.clone()));
        let path = match (ctx, whole.as_str()) {
            (_, "attributes") => {
                return keyed(match ctx {
                    C::Resource => Path::ResourceAttributes,
                    _ => Path::Attributes,
                });
            }
            (C::Resource, _) => None,
            (_, "resource.attributes") => return keyed(Path::ResourceAttributes),
            (_, "instrumentation_scope.attributes") => return keyed(Path::ScopeAttributes),
            (_, "instrumentation_scope.name") => Some(Path::ScopeName),
            (_, "instrumentation_scope.version") => Some(Path::ScopeVersion),
            (C::Span, "name") => Some(Path::Name),
            (C::Span, "kind") => Some(Path::Kind),
            (C::Span, "status.code") => Some(Path::StatusCode),
            (C::Span, "status.message") => Some(Path::StatusMessage),
            (C::Span, "start_time_unix_nano") | (C::DataPoint, "start_time_unix_nano") => {
                Some(Path::StartTime)
            }
            (C::Span, "end_time_unix_nano") => Some(Path::EndTime),
            (C::Span | C::Log, "trace_id.string") => Some(Path::TraceId),
            (C::Span | C::Log, "span_id.string") => Some(Path::SpanId),
            (C::Span, "parent_span_id.string") => Some(Path::ParentSpanId),
            (C::Span, "trace_state") => Some(Path::TraceState),
            (C::Log, "body") | (C::Log, "body.string") => Some(Path::Body),
            (C::Log, "severity_number") => Some(Path::SeverityNumber),
            (C::Log, "severity_text") => Some(Path::SeverityText),
            (C::Log | C::DataPoint, "time_unix_nano") => Some(Path::Time),
            (C::Log, "observed_time_unix_nano") => Some(Path::ObservedTime),
            (C::Metric, "name") => Some(Path::Name),
            (C::Metric, "description") => Some(Path::Description),
            (C::Metric, "unit") => Some(Path::Unit),
            (C::Metric, "type") => Some(Path::MetricType),
            (C::DataPoint, "metric.name") => Some(Path::MetricName),
            (C::DataPoint, "metric.unit") => Some(Path::MetricUnit),
            (C::DataPoint, "metric.type") => Some(Path::MetricTypeOfPoint),
            (C::DataPoint, "value_int") => Some(Path::ValueInt),
            (C::DataPoint, "value_double") => Some(Path::ValueDouble),
            (C::DataPoint, "count") => Some(Path::Count),
            (C::DataPoint, "sum") => Some(Path::Sum),
            _ => None,
        };
        match (path, key) {
            (Some(p), None) => Ok(p),
            (Some(_), Some(_)) => Err(OttlError::NotAMap(whole)),
            (None, _) => Err(OttlError::UnknownPath {
                path: whole,
                context: ctx.name(),
            }),
        }
    }

    fn is_map(&self) -> bool {
        matches!(
            self,
            Path::Attributes(None) | Path::ResourceAttributes(None) | Path::ScopeAttributes(None)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone)]
pub enum Expr {
    Lit(Val),
    Path(Path),
    List(Vec<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    Math(Box<Expr>, MathOp, Box<Expr>),
    Neg(Box<Expr>),
    IsMatch(Box<Expr>, regex::Regex),
    Len(Box<Expr>),
    Int(Box<Expr>),
    Double(Box<Expr>),
    Concat(Vec<Expr>, String),
    IsKind(Box<Expr>, &'static str),
}

/// A transform statement: an editor and its optional `where` condition.
#[derive(Debug, Clone)]
pub struct Statement {
    pub editor: Editor,
    pub condition: Option<Expr>,
}

#[derive(Debug, Clone)]
pub enum Editor {
    Set(Path, Expr),
    DeleteKey(Path, String),
    DeleteMatchingKeys(Path, regex::Regex),
    KeepKeys(Path, Vec<String>),
    ReplacePattern(Path, regex::Regex, String),
    ReplaceAllPatterns {
        map: Path,
        keys: bool,
        pattern: regex::Regex,
        replacement: String,
    },
    TruncateAll(Path, usize),
}

// ---------------------------------------------------------------------------------------------
// Lexer and parser.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Op(&'static str),
}

fn lex(src: &str) -> Result<Vec<Tok>, OttlError> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if text.contains('.') {
                out.push(Tok::Float(
                    text.parse()
                        .map_err(|_| OttlError::BadNumber(text.clone()))?,
                ));
            } else {
                out.push(Tok::Int(
                    text.parse()
                        .map_err(|_| OttlError::BadNumber(text.clone()))?,
                ));
            }
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(OttlError::UnterminatedString),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        let e = chars.get(i + 1).ok_or(OttlError::UnterminatedString)?;
                        s.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => *other,
                        });
                        i += 2;
                    }
                    Some(other) => {
                        s.push(*other);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["==", "!=", "<=", ">="]
                .into_iter()
                .find(|o| *o == two)
                .or_else(|| {
                    ["<", ">", "+", "-", "*", "/", "(", ")", "[", "]", ",", "."]
                        .into_iter()
                        .find(|o| o.starts_with(c))
                })
                .ok_or(OttlError::UnexpectedChar(c))?;
            i += op.len();
            out.push(Tok::Op(op));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    ctx: ContextKind,
}

fn enum_value(name: &str) -> Option<i64> {
    Some(match name {
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        _ => {
            let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
            let (level, n) = match rest.find(|c: char| c.is_ascii_digit()) {
                Some(i) => (&rest[..i], rest[i..].parse::<i64>().ok()?),
                None => (rest, 1),
            };
            if !(1..=4).contains(&n) {
                return None;
            }
            let base = match level {
                "TRACE" => 1,
                "DEBUG" => 5,
                "INFO" => 9,
                "WARN" => 13,
                "ERROR" => 17,
                "FATAL" => 21,
                _ => return None,
            };
            base + n - 1
        }
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(i)) if i == w) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> Result<(), OttlError> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(OttlError::Expected {
                expected: op.to_owned(),
                found: self.describe(),
            })
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            None => "the end".into(),
            Some(Tok::Ident(i)) => format!("`{i}`"),
            Some(Tok::Str(s)) => format!("\"{s}\""),
            Some(Tok::Int(i)) => i.to_string(),
            Some(Tok::Float(f)) => f.to_string(),
            Some(Tok::Op(o)) => format!("`{o}`"),
        }
    }

    fn expr(&mut self) -> Result<Expr, OttlError> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, OttlError> {
        let mut left = self.not()?;
        while self.eat_word("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, OttlError> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }

    fn cmp(&mut self) -> Result<Expr, OttlError> {
        let left = self.sum()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => return Ok(left),
        };
        self.pos += 1;
        Ok(Expr::Cmp(Box::new(left), op, Box::new(self.sum()?)))
    }

    fn sum(&mut self) -> Result<Expr, OttlError> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat_op("+") {
                MathOp::Add
            } else if self.eat_op("-") {
                MathOp::Sub
            } else {
                return Ok(left);
            };
            left = Expr::Math(Box::new(left), op, Box::new(self.product()?));
        }
    }

    fn product(&mut self) -> Result<Expr, OttlError> {
        let mut left = self.unary()?;
        loop {
            let op = if self.eat_op("*") {
                MathOp::Mul
            } else if self.eat_op("/") {
                MathOp::Div
            } else {
                return Ok(left);
            };
            left = Expr::Math(Box::new(left), op, Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Expr, OttlError> {
        if self.eat_op("-") {
            return Ok(Expr::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, OttlError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Expr::Lit(Val::Str(s))),
            Some(Tok::Int(i)) => Ok(Expr::Lit(Val::Int(i))),
            Some(Tok::Float(f)) => Ok(Expr::Lit(Val::Double(f))),
            Some(Tok::Op("(")) => {
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Some(Tok::Op("[")) => {
                let mut items = Vec::new();
                if !self.eat_op("]") {
                    loop {
                        items.push(self.expr()?);
                        if self.eat_op("]") {
                            break;
                        }
                        self.expect_op(",")?;
                    }
                }
                Ok(Expr::List(items))
            }
            Some(Tok::Ident(word)) => match word.as_str() {
                "true" => Ok(Expr::Lit(Val::Bool(true))),
                "false" => Ok(Expr::Lit(Val::Bool(false))),
                "nil" => Ok(Expr::Lit(Val::Nil)),
                _ if self.eat_op("(") => self.converter(&word),
                _ if word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') =>
                {
                    enum_value(&word)
                        .map(|v| Expr::Lit(Val::Int(v)))
                        .ok_or(OttlError::UnknownEnum(word))
                }
                _ => self.path_from(word).map(Expr::Path),
            },
            Some(Tok::Op(o)) => Err(OttlError::Unexpected(format!("`{o}`"))),
            None => Err(OttlError::Unexpected("end of expression".into())),
        }
    }

    fn path_from(&mut self, first: String) -> Result<Path, OttlError> {
        let mut parts = vec![first];
        while self.eat_op(".") {
            match self.next() {
                Some(Tok::Ident(i)) => parts.push(i),
                _ => {
                    return Err(OttlError::Syntax(format!(
                        "expected a name after `{}.`",
                        parts.join(".")
                    )));
                }
            }
        }
        let key = if self.eat_op("[") {
            let Some(Tok::Str(k)) = self.next() else {
                return Err(OttlError::Syntax(format!(
                    "{}[...] takes a string key",
                    parts.join(".")
                )));
            };
            self.expect_op("]")?;
            if matches!(self.peek(), Some(Tok::Op("["))) {
                return Err(OttlError::Syntax(
                    "nested map keys are not supported".into(),
                ));
            }
            Some(k)
        } else {
            None
        };
        Path::parse(self.ctx, &parts, key)
    }

    fn args(&mut self) -> Result<Vec<Expr>, OttlError> {
        let mut args = Vec::new();
        if self.eat_op(")") {
            return Ok(args);
        }
        loop {
            args.push(self.expr()?);
            if self.eat_op(")") {
                return Ok(args);
            }
            self.expect_op(",")?;
        }
    }

    fn converter(&mut self, name: &str) -> Result<Expr, OttlError> {
        let mut args = self.args()?;
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(OttlError::Arity {
                    func: name.to_owned(),
                    expected: n,
                    got: args.len(),
                })
            }
        };
        Ok(match name {
            "IsMatch" => {
                arity(2)?;
                let pattern = literal_regex(name, &args[1])?;
                Expr::IsMatch(Box::new(args.remove(0)), pattern)
            }
            "Len" | "Int" | "Double" | "IsString" | "IsInt" | "IsDouble" | "IsBool" => {
                arity(1)?;
                let a = Box::new(args.remove(0));
                match name {
                    "Len" => Expr::Len(a),
                    "Int" => Expr::Int(a),
                    "Double" => Expr::Double(a),
                    "IsString" => Expr::IsKind(a, "string"),
                    "IsInt" => Expr::IsKind(a, "int"),
                    "IsDouble" => Expr::IsKind(a, "double"),
                    _ => Expr::IsKind(a, "bool"),
                }
            }
            "Concat" => {
                arity(2)?;
                let Expr::Lit(Val::Str(sep)) = &args[1] else {
                    return Err(OttlError::argument(
                        name,
                        "the separator must be a string literal",
                    ));
                };
                let sep = sep.clone();
                let Expr::List(items) = args.remove(0) else {
                    return Err(OttlError::argument(
                        name,
                        "the first argument is a list, e.g. Concat([a, b], \"-\")",
                    ));
                };
                Expr::Concat(items, sep)
            }
            other => {
                return Err(OttlError::UnsupportedFunction(other.to_owned()));
            }
        })
    }

    fn done(&self) -> Result<(), OttlError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(OttlError::Trailing(self.describe())),
        }
    }
}

fn literal_regex(func: &str, e: &Expr) -> Result<regex::Regex, OttlError> {
    match e {
        Expr::Lit(Val::Str(p)) => regex::Regex::new(p).map_err(|source| OttlError::Regex {
            func: func.to_owned(),
            pattern: p.clone(),
            source,
        }),
        _ => Err(OttlError::argument(
            func,
            "the pattern must be a string literal",
        )),
    }
}

fn literal_str(func: &str, e: &Expr) -> Result<String, OttlError> {
    match e {
        Expr::Lit(Val::Str(s)) => Ok(s.clone()),
        _ => Err(OttlError::argument(func, "expected a string literal")),
    }
}

/// Parses a condition for `ctx`.
pub fn parse_condition(ctx: ContextKind, src: &str) -> Result<Expr, OttlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        ctx,
    };
    let e = p.expr()?;
    p.done()?;
    Ok(e)
}

/// Parses a statement (`editor(args) [where condition]`) for `ctx`.
pub fn parse_statement(ctx: ContextKind, src: &str) -> Result<Statement, OttlError> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        ctx,
    };
    let Some(Tok::Ident(name)) = p.next() else {
        return Err(OttlError::Syntax(
            "a statement starts with an editor, e.g. set(attributes[\"k\"], \"v\")".into(),
        ));
    };
    p.expect_op("(")?;
    let mut args = p.args()?;
    let arity = |n: usize, args: &Vec<Expr>| {
        if args.len() == n {
            Ok(())
        } else {
            Err(OttlError::Arity {
                func: name.clone(),
                expected: n,
                got: args.len(),
            })
        }
    };
    let target = |e: &Expr, map: bool| match e {
        Expr::Path(path) if path.is_map() == map => Ok(path.clone()),
        _ if map => Err(OttlError::argument(
            &name,
            "the first argument is a map path, e.g. attributes",
        )),
        _ => Err(OttlError::argument(
            &name,
            "the first argument is a path, e.g. attributes[\"k\"] or name",
        )),
    };
    let editor = match name.as_str() {
        "set" => {
            arity(2, &args)?;
            let path = target(&args[0], false)?;
            Editor::Set(path, args.remove(1))
        }
        "delete_key" => {
            arity(2, &args)?;
            Editor::DeleteKey(target(&args[0], true)?, literal_str(&name, &args[1])?)
        }
        "delete_matching_keys" => {
            arity(2, &args)?;
            Editor::DeleteMatchingKeys(target(&args[0], true)?, literal_regex(&name, &args[1])?)
        }
        "keep_keys" => {
            arity(2, &args)?;
            let Expr::List(items) = &args[1] else {
                return Err(OttlError::argument(
                    &name,
                    "the keys are a list, e.g. [\"a\", \"b\"]",
                ));
            };
            let keys = items
                .iter()
                .map(|k| literal_str(&name, k))
                .collect::<Result<_, _>>()?;
            Editor::KeepKeys(target(&args[0], true)?, keys)
        }
        "replace_pattern" => {
            arity(3, &args)?;
            Editor::ReplacePattern(
                target(&args[0], false)?,
                literal_regex(&name, &args[1])?,
                literal_str(&name, &args[2])?,
            )
        }
        "replace_all_patterns" => {
            arity(4, &args)?;
            let keys = match literal_str(&name, &args[1])?.as_str() {
                "key" => true,
                "value" => false,
                other => {
                    return Err(OttlError::argument(
                        &name,
                        format!("mode {other:?}: use \"key\" or \"value\""),
                    ));
                }
            };
            Editor::ReplaceAllPatterns {
                map: target(&args[0], true)?,
                keys,
                pattern: literal_regex(&name, &args[2])?,
                replacement: literal_str(&name, &args[3])?,
            }
        }
        "truncate_all" => {
            arity(2, &args)?;
            let Expr::Lit(Val::Int(n)) = args[1] else {
                return Err(OttlError::argument(
                    &name,
                    "the limit must be an integer literal",
                ));
            };
            let n = usize::try_from(n)
                .map_err(|_| OttlError::argument(&name, "the limit must not be negative"))?;
            Editor::TruncateAll(target(&args[0], true)?, n)
        }
        other => {
            return Err(OttlError::UnsupportedEditor(other.to_owned()));
        }
    };
    let condition = if p.eat_word("where") {
        Some(p.expr()?)
    } else {
        None
    };
    p.done()?;
    Ok(Statement { editor, condition })
}

// ---------------------------------------------------------------------------------------------
// Evaluation.

/// A record a condition or statement runs on, with its resource and scope.
pub trait Target {
    fn get(&self, path: &Path) -> Val;
    /// Sets a scalar path; false when the path cannot take the value.
    fn set(&mut self, path: &Path, value: Val) -> bool;
    fn map_mut(&mut self, path: &Path) -> Option<&mut Vec<KeyValue>>;
}

fn attr_val(attrs: &[KeyValue], key: &Option<String>) -> Val {
    match key {
        Some(k) => Val::from_any(data::get(attrs, k)),
        None => Val::Other(AnyValue {
            value: Some(AV::KvlistValue(
                opentelemetry_proto::tonic::common::v1::KeyValueList {
                    values: attrs.to_vec(),
                },
            )),
        }),
    }
}

fn set_attr(attrs: &mut Vec<KeyValue>, key: &Option<String>, value: Val) -> bool {
    match (key, value.to_any()) {
        (Some(k), Some(v)) => {
            data::upsert(attrs, k, v);
            true
        }
        _ => false,
    }
}

fn u64_val(v: u64) -> Val {
    Val::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn id_hex(b: &[u8]) -> Val {
    Val::Str(hex::encode(b))
}

/// Paths every context shares: resource and scope.
fn common_get(
    resource: &Option<Resource>,
    scope: &Option<InstrumentationScope>,
    path: &Path,
) -> Val {
    match path {
        Path::ResourceAttributes(k) => attr_val(
            resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]),
            k,
        ),
        Path::ScopeAttributes(k) => attr_val(
            scope
                .as_ref()
                .map(|s| s.attributes.as_slice())
                .unwrap_or(&[]),
            k,
        ),
        Path::ScopeName => scope
            .as_ref()
            .map(|s| Val::Str(s.name.clone()))
            .unwrap_or(Val::Nil),
        Path::ScopeVersion => scope
            .as_ref()
            .map(|s| Val::Str(s.version.clone()))
            .unwrap_or(Val::Nil),
        _ => Val::Nil,
    }
}

pub struct ResourceTarget<'a> {
    pub resource: &'a mut Option<Resource>,
}

impl Target for ResourceTarget<'_> {
    fn get(&self, path: &Path) -> Val {
        common_get(self.resource, &None, path)
    }
    fn set(&mut self, path: &Path, value: Val) -> bool {
        match path {
            Path::ResourceAttributes(k) => set_attr(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
                k,
                value,
            ),
            _ => false,
        }
    }
    fn map_mut(&mut self, path: &Path) -> Option<&mut Vec<KeyValue>> {
        match path {
            Path::ResourceAttributes(None) => Some(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
            ),
            _ => None,
        }
    }
}

pub struct SpanTarget<'a> {
    pub span: &'a mut Span,
    pub resource: &'a mut Option<Resource>,
    pub scope: &'a Option<InstrumentationScope>,
}

impl Target for SpanTarget<'_> {
    fn get(&self, path: &Path) -> Val {
        let s = &*self.span;
        match path {
            Path::Attributes(k) => attr_val(&s.attributes, k),
            Path::Name => Val::Str(s.name.clone()),
            Path::Kind => Val::Int(i64::from(s.kind)),
            Path::StatusCode => {
                Val::Int(s.status.as_ref().map(|st| i64::from(st.code)).unwrap_or(0))
            }
            Path::StatusMessage => Val::Str(
                s.status
                    .as_ref()
                    .map(|st| st.message.clone())
                    .unwrap_or_default(),
            ),
            Path::StartTime => u64_val(s.start_time_unix_nano),
            Path::EndTime => u64_val(s.end_time_unix_nano),
            Path::TraceId => id_hex(&s.trace_id),
            Path::SpanId => id_hex(&s.span_id),
            Path::ParentSpanId => id_hex(&s.parent_span_id),
            Path::TraceState => Val::Str(s.trace_state.clone()),
            other => common_get(self.resource, self.scope, other),
        }
    }

    fn set(&mut self, path: &Path, value: Val) -> bool {
        let s = &mut *self.span;
        match (path, value) {
            (Path::Attributes(k), v) => set_attr(&mut s.attributes, k, v),
            (Path::ResourceAttributes(k), v) => set_attr(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
                k,
                v,
            ),
            (Path::Name, Val::Str(v)) => {
                s.name = v;
                true
            }
            (Path::StatusCode, Val::Int(c)) if (0..=2).contains(&c) => {
                s.status.get_or_insert_with(Default::default).code = c as i32;
                true
            }
            (Path::StatusMessage, Val::Str(m)) => {
                s.status.get_or_insert_with(Default::default).message = m;
                true
            }
            (Path::Kind, Val::Int(k)) if (0..=5).contains(&k) => {
                s.kind = k as i32;
                true
            }
            (Path::TraceState, Val::Str(v)) => {
                s.trace_state = v;
                true
            }
            _ => false,
        }
    }

    fn map_mut(&mut self, path: &Path) -> Option<&mut Vec<KeyValue>> {
        match path {
            Path::Attributes(None) => Some(&mut self.span.attributes),
            Path::ResourceAttributes(None) => Some(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
            ),
            _ => None,
        }
    }
}

pub struct LogTarget<'a> {
    pub log: &'a mut LogRecord,
    pub resource: &'a mut Option<Resource>,
    pub scope: &'a Option<InstrumentationScope>,
}

impl Target for LogTarget<'_> {
    fn get(&self, path: &Path) -> Val {
        let l = &*self.log;
        match path {
            Path::Attributes(k) => attr_val(&l.attributes, k),
            Path::Body => Val::from_any(l.body.as_ref()),
            Path::SeverityNumber => Val::Int(i64::from(l.severity_number)),
            Path::SeverityText => Val::Str(l.severity_text.clone()),
            Path::Time => u64_val(l.time_unix_nano),
            Path::ObservedTime => u64_val(l.observed_time_unix_nano),
            Path::TraceId => id_hex(&l.trace_id),
            Path::SpanId => id_hex(&l.span_id),
            other => common_get(self.resource, self.scope, other),
        }
    }

    fn set(&mut self, path: &Path, value: Val) -> bool {
        let l = &mut *self.log;
        match (path, value) {
            (Path::Attributes(k), v) => set_attr(&mut l.attributes, k, v),
            (Path::ResourceAttributes(k), v) => set_attr(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
                k,
                v,
            ),
            (Path::Body, v) => match v.to_any() {
                Some(any) => {
                    l.body = Some(any);
                    true
                }
                None => false,
            },
            (Path::SeverityNumber, Val::Int(n)) if (0..=24).contains(&n) => {
                l.severity_number = n as i32;
                true
            }
            (Path::SeverityText, Val::Str(t)) => {
                l.severity_text = t;
                true
            }
            _ => false,
        }
    }

    fn map_mut(&mut self, path: &Path) -> Option<&mut Vec<KeyValue>> {
        match path {
            Path::Attributes(None) => Some(&mut self.log.attributes),
            Path::ResourceAttributes(None) => Some(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
            ),
            _ => None,
        }
    }
}

fn metric_type(m: &Metric) -> i64 {
    match &m.data {
        None => 0,
        Some(Data::Gauge(_)) => 1,
        Some(Data::Sum(_)) => 2,
        Some(Data::Histogram(_)) => 3,
        Some(Data::ExponentialHistogram(_)) => 4,
        Some(Data::Summary(_)) => 5,
    }
}

pub struct MetricTarget<'a> {
    pub metric: &'a mut Metric,
    pub resource: &'a mut Option<Resource>,
    pub scope: &'a Option<InstrumentationScope>,
}

impl Target for MetricTarget<'_> {
    fn get(&self, path: &Path) -> Val {
        let m = &*self.metric;
        match path {
            Path::Name => Val::Str(m.name.clone()),
            Path::Description => Val::Str(m.description.clone()),
            Path::Unit => Val::Str(m.unit.clone()),
            Path::MetricType => Val::Int(metric_type(m)),
            other => common_get(self.resource, self.scope, other),
        }
    }

    fn set(&mut self, path: &Path, value: Val) -> bool {
        let m = &mut *self.metric;
        match (path, value) {
            (Path::Name, Val::Str(v)) => m.name = v,
            (Path::Description, Val::Str(v)) => m.description = v,
            (Path::Unit, Val::Str(v)) => m.unit = v,
            (Path::ResourceAttributes(k), v) => {
                return set_attr(
                    &mut self
                        .resource
                        .get_or_insert_with(Default::default)
                        .attributes,
                    k,
                    v,
                );
            }
            _ => return false,
        }
        true
    }

    fn map_mut(&mut self, path: &Path) -> Option<&mut Vec<KeyValue>> {
        match path {
            Path::ResourceAttributes(None) => Some(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
            ),
            _ => None,
        }
    }
}

/// One data point of any kind, with the metric it belongs to.
pub enum PointMut<'a> {
    Number(&'a mut opentelemetry_proto::tonic::metrics::v1::NumberDataPoint),
    Histogram(&'a mut opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint),
    Exponential(&'a mut opentelemetry_proto::tonic::metrics::v1::ExponentialHistogramDataPoint),
    Summary(&'a mut opentelemetry_proto::tonic::metrics::v1::SummaryDataPoint),
}

pub struct PointTarget<'a> {
    pub point: PointMut<'a>,
    pub metric_name: &'a str,
    pub metric_unit: &'a str,
    pub metric_type: i64,
    pub resource: &'a mut Option<Resource>,
    pub scope: &'a Option<InstrumentationScope>,
}

impl PointTarget<'_> {
    fn attributes(&self) -> &[KeyValue] {
        match &self.point {
            PointMut::Number(p) => &p.attributes,
            PointMut::Histogram(p) => &p.attributes,
            PointMut::Exponential(p) => &p.attributes,
            PointMut::Summary(p) => &p.attributes,
        }
    }

    fn attributes_mut(&mut self) -> &mut Vec<KeyValue> {
        match &mut self.point {
            PointMut::Number(p) => &mut p.attributes,
            PointMut::Histogram(p) => &mut p.attributes,
            PointMut::Exponential(p) => &mut p.attributes,
            PointMut::Summary(p) => &mut p.attributes,
        }
    }
}

impl Target for PointTarget<'_> {
    fn get(&self, path: &Path) -> Val {
        use number_data_point::Value as NV;
        match (path, &self.point) {
            (Path::Attributes(k), _) => attr_val(self.attributes(), k),
            (Path::MetricName, _) => Val::Str(self.metric_name.to_string()),
            (Path::MetricUnit, _) => Val::Str(self.metric_unit.to_string()),
            (Path::MetricTypeOfPoint, _) => Val::Int(self.metric_type),
            (Path::ValueInt, PointMut::Number(p)) => match p.value {
                Some(NV::AsInt(i)) => Val::Int(i),
                _ => Val::Nil,
            },
            (Path::ValueDouble, PointMut::Number(p)) => match p.value {
                Some(NV::AsDouble(d)) => Val::Double(d),
                _ => Val::Nil,
            },
            (Path::Count, PointMut::Histogram(p)) => u64_val(p.count),
            (Path::Count, PointMut::Exponential(p)) => u64_val(p.count),
            (Path::Count, PointMut::Summary(p)) => u64_val(p.count),
            (Path::Sum, PointMut::Histogram(p)) => p.sum.map(Val::Double).unwrap_or(Val::Nil),
            (Path::Sum, PointMut::Exponential(p)) => p.sum.map(Val::Double).unwrap_or(Val::Nil),
            (Path::Sum, PointMut::Summary(p)) => Val::Double(p.sum),
            (Path::Time, PointMut::Number(p)) => u64_val(p.time_unix_nano),
            (Path::Time, PointMut::Histogram(p)) => u64_val(p.time_unix_nano),
            (Path::Time, PointMut::Exponential(p)) => u64_val(p.time_unix_nano),
            (Path::Time, PointMut::Summary(p)) => u64_val(p.time_unix_nano),
            (Path::StartTime, PointMut::Number(p)) => u64_val(p.start_time_unix_nano),
            (Path::StartTime, PointMut::Histogram(p)) => u64_val(p.start_time_unix_nano),
            (Path::StartTime, PointMut::Exponential(p)) => u64_val(p.start_time_unix_nano),
            (Path::StartTime, PointMut::Summary(p)) => u64_val(p.start_time_unix_nano),
            (other, _) => common_get(self.resource, self.scope, other),
        }
    }

    fn set(&mut self, path: &Path, value: Val) -> bool {
        use number_data_point::Value as NV;
        match (path, value, &mut self.point) {
            (Path::Attributes(k), v, _) => set_attr(self.attributes_mut(), k, v),
            (Path::ValueInt, Val::Int(i), PointMut::Number(p)) => {
                p.value = Some(NV::AsInt(i));
                true
            }
            (Path::ValueDouble, Val::Double(d), PointMut::Number(p)) => {
                p.value = Some(NV::AsDouble(d));
                true
            }
            (Path::ResourceAttributes(k), v, _) => set_attr(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
                k,
                v,
            ),
            _ => false,
        }
    }

    fn map_mut(&mut self, path: &Path) -> Option<&mut Vec<KeyValue>> {
        match path {
            Path::Attributes(None) => Some(self.attributes_mut()),
            Path::ResourceAttributes(None) => Some(
                &mut self
                    .resource
                    .get_or_insert_with(Default::default)
                    .attributes,
            ),
            _ => None,
        }
    }
}

fn cmp(a: &Val, op: CmpOp, b: &Val) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (a, b) {
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Int(x), Val::Double(y)) => (*x as f64).partial_cmp(y),
        (Val::Double(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Double(x), Val::Double(y)) => x.partial_cmp(y),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Bytes(x), Val::Bytes(y)) => Some(x.cmp(y)),
        (Val::Nil, Val::Nil) => Some(Ordering::Equal),
        (x, y) => {
            // Maps, lists, and values of different kinds: only equality is defined.
            let equal = x == y;
            return match op {
                CmpOp::Eq => equal,
                CmpOp::Ne => !equal,
                _ => false,
            };
        }
    };
    match (op, ord) {
        (CmpOp::Eq, o) => o == Some(Ordering::Equal),
        (CmpOp::Ne, o) => o != Some(Ordering::Equal),
        (_, None) => false,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
    }
}

fn math(a: Val, op: MathOp, b: Val) -> Val {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => match op {
            MathOp::Add => x.checked_add(y),
            MathOp::Sub => x.checked_sub(y),
            MathOp::Mul => x.checked_mul(y),
            MathOp::Div => x.checked_div(y),
        }
        .map(Val::Int)
        .unwrap_or(Val::Nil),
        (Val::Str(x), Val::Str(y)) if op == MathOp::Add => Val::Str(x + &y),
        (x, y) => {
            let f = |v: &Val| match v {
                Val::Int(i) => Some(*i as f64),
                Val::Double(d) => Some(*d),
                _ => None,
            };
            match (f(&x), f(&y)) {
                (Some(x), Some(y)) => Val::Double(match op {
                    MathOp::Add => x + y,
                    MathOp::Sub => x - y,
                    MathOp::Mul => x * y,
                    MathOp::Div => x / y,
                }),
                _ => Val::Nil,
            }
        }
    }
}

pub fn eval(e: &Expr, t: &dyn Target) -> Val {
    match e {
        Expr::Lit(v) => v.clone(),
        Expr::Path(p) => t.get(p),
        Expr::List(items) => Val::List(items.iter().map(|i| eval(i, t)).collect()),
        Expr::Not(inner) => Val::Bool(!truthy(inner, t)),
        Expr::And(a, b) => Val::Bool(truthy(a, t) && truthy(b, t)),
        Expr::Or(a, b) => Val::Bool(truthy(a, t) || truthy(b, t)),
        Expr::Cmp(a, op, b) => Val::Bool(cmp(&eval(a, t), *op, &eval(b, t))),
        Expr::Math(a, op, b) => math(eval(a, t), *op, eval(b, t)),
        Expr::Neg(a) => match eval(a, t) {
            Val::Int(i) => i.checked_neg().map(Val::Int).unwrap_or(Val::Nil),
            Val::Double(d) => Val::Double(-d),
            _ => Val::Nil,
        },
        Expr::IsMatch(a, re) => Val::Bool(eval(a, t).text().is_some_and(|s| re.is_match(&s))),
        Expr::Len(a) => match eval(a, t) {
            Val::Str(s) => Val::Int(s.chars().count() as i64),
            Val::Bytes(b) => Val::Int(b.len() as i64),
            Val::List(l) => Val::Int(l.len() as i64),
            Val::Other(AnyValue {
                value: Some(AV::ArrayValue(a)),
            }) => Val::Int(a.values.len() as i64),
            Val::Other(AnyValue {
                value: Some(AV::KvlistValue(l)),
            }) => Val::Int(l.values.len() as i64),
            _ => Val::Nil,
        },
        Expr::Int(a) => match eval(a, t) {
            Val::Int(i) => Val::Int(i),
            Val::Double(d) => Val::Int(d.trunc() as i64),
            Val::Bool(b) => Val::Int(i64::from(b)),
            Val::Str(s) => s.trim().parse().map(Val::Int).unwrap_or(Val::Nil),
            _ => Val::Nil,
        },
        Expr::Double(a) => match eval(a, t) {
            Val::Int(i) => Val::Double(i as f64),
            Val::Double(d) => Val::Double(d),
            Val::Bool(b) => Val::Double(f64::from(u8::from(b))),
            Val::Str(s) => s.trim().parse().map(Val::Double).unwrap_or(Val::Nil),
            _ => Val::Nil,
        },
        Expr::Concat(items, sep) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| eval(i, t).text().unwrap_or_default())
                .collect();
            Val::Str(parts.join(sep))
        }
        Expr::IsKind(a, kind) => Val::Bool(matches!(
            (eval(a, t), *kind),
            (Val::Str(_), "string")
                | (Val::Int(_), "int")
                | (Val::Double(_), "double")
                | (Val::Bool(_), "bool")
        )),
    }
}

/// A condition's result: true only for the boolean `true`.
pub fn truthy(e: &Expr, t: &dyn Target) -> bool {
    matches!(eval(e, t), Val::Bool(true))
}

/// Runs a statement on one record; true when it changed something or its condition held.
pub fn execute(s: &Statement, t: &mut dyn Target) {
    if let Some(c) = &s.condition
        && !truthy(c, t)
    {
        return;
    }
    match &s.editor {
        Editor::Set(path, value) => {
            let v = eval(value, t);
            t.set(path, v);
        }
        Editor::DeleteKey(map, key) => {
            if let Some(m) = t.map_mut(map) {
                m.retain(|kv| kv.key != *key);
            }
        }
        Editor::DeleteMatchingKeys(map, re) => {
            if let Some(m) = t.map_mut(map) {
                m.retain(|kv| !re.is_match(&kv.key));
            }
        }
        Editor::KeepKeys(map, keys) => {
            if let Some(m) = t.map_mut(map) {
                m.retain(|kv| keys.contains(&kv.key));
            }
        }
        Editor::ReplacePattern(path, re, replacement) => {
            if let Val::Str(s) = t.get(path) {
                let out = re.replace_all(&s, replacement.as_str());
                if out != s {
                    let out = out.into_owned();
                    t.set(path, Val::Str(out));
                }
            }
        }
        Editor::ReplaceAllPatterns {
            map,
            keys,
            pattern,
            replacement,
        } => {
            if let Some(m) = t.map_mut(map) {
                for kv in m.iter_mut() {
                    if *keys {
                        let k = pattern
                            .replace_all(&kv.key, replacement.as_str())
                            .into_owned();
                        kv.key = k;
                    } else if let Some(AnyValue {
                        value: Some(AV::StringValue(s)),
                    }) = &mut kv.value
                    {
                        let v = pattern.replace_all(s, replacement.as_str()).into_owned();
                        *s = v;
                    }
                }
            }
        }
        Editor::TruncateAll(map, limit) => {
            if let Some(m) = t.map_mut(map) {
                for kv in m.iter_mut() {
                    if let Some(AnyValue {
                        value: Some(AV::StringValue(s)),
                    }) = &mut kv.value
                        && s.len() > *limit
                    {
                        let mut end = *limit;
                        while !s.is_char_boundary(end) {
                            end -= 1;
                        }
                        s.truncate(end);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Walking a request.

/// Keeps the records of context `ctx` in `request` for which `keep` returns true, and returns
/// how many spans, data points or log records went with the ones removed. Records of another
/// signal than `ctx`'s are left alone.
pub fn retain(
    request: &mut crate::Request,
    ctx: ContextKind,
    mut keep: impl FnMut(&mut dyn Target) -> bool,
) -> u64 {
    use crate::Request as R;
    let before = request.count();
    match (&mut *request, ctx) {
        (R::Traces(r), ContextKind::Resource) => r.resource_spans.retain_mut(|rs| {
            keep(&mut ResourceTarget {
                resource: &mut rs.resource,
            })
        }),
        (R::Metrics(r), ContextKind::Resource) => r.resource_metrics.retain_mut(|rm| {
            keep(&mut ResourceTarget {
                resource: &mut rm.resource,
            })
        }),
        (R::Logs(r), ContextKind::Resource) => r.resource_logs.retain_mut(|rl| {
            keep(&mut ResourceTarget {
                resource: &mut rl.resource,
            })
        }),
        (R::Traces(r), ContextKind::Span) => {
            for rs in &mut r.resource_spans {
                let resource = &mut rs.resource;
                for ss in &mut rs.scope_spans {
                    let scope = &ss.scope;
                    ss.spans.retain_mut(|span| {
                        keep(&mut SpanTarget {
                            span,
                            resource,
                            scope,
                        })
                    });
                }
            }
        }
        (R::Logs(r), ContextKind::Log) => {
            for rl in &mut r.resource_logs {
                let resource = &mut rl.resource;
                for sl in &mut rl.scope_logs {
                    let scope = &sl.scope;
                    sl.log_records.retain_mut(|log| {
                        keep(&mut LogTarget {
                            log,
                            resource,
                            scope,
                        })
                    });
                }
            }
        }
        (R::Metrics(r), ContextKind::Metric) => {
            for rm in &mut r.resource_metrics {
                let resource = &mut rm.resource;
                for sm in &mut rm.scope_metrics {
                    let scope = &sm.scope;
                    sm.metrics.retain_mut(|metric| {
                        keep(&mut MetricTarget {
                            metric,
                            resource,
                            scope,
                        })
                    });
                }
            }
        }
        (R::Metrics(r), ContextKind::DataPoint) => {
            for rm in &mut r.resource_metrics {
                let resource = &mut rm.resource;
                for sm in &mut rm.scope_metrics {
                    let scope = &sm.scope;
                    for metric in &mut sm.metrics {
                        let metric_type = metric_type(metric);
                        let name = metric.name.clone();
                        let unit = metric.unit.clone();
                        let mut point = |point: PointMut<'_>| {
                            keep(&mut PointTarget {
                                point,
                                metric_name: &name,
                                metric_unit: &unit,
                                metric_type,
                                resource,
                                scope,
                            })
                        };
                        match &mut metric.data {
                            Some(Data::Gauge(g)) => {
                                g.data_points.retain_mut(|p| point(PointMut::Number(p)))
                            }
                            Some(Data::Sum(s)) => {
                                s.data_points.retain_mut(|p| point(PointMut::Number(p)))
                            }
                            Some(Data::Histogram(h)) => {
                                h.data_points.retain_mut(|p| point(PointMut::Histogram(p)))
                            }
                            Some(Data::ExponentialHistogram(e)) => e
                                .data_points
                                .retain_mut(|p| point(PointMut::Exponential(p))),
                            Some(Data::Summary(s)) => {
                                s.data_points.retain_mut(|p| point(PointMut::Summary(p)))
                            }
                            None => {}
                        }
                    }
                }
            }
        }
        _ => {}
    }
    u64::from(before.saturating_sub(request.count()))
}

/// Runs `f` on every record of context `ctx` in `request`.
pub fn for_each(
    request: &mut crate::Request,
    ctx: ContextKind,
    mut f: impl FnMut(&mut dyn Target),
) {
    retain(request, ctx, |t| {
        f(t);
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn span() -> Span {
        Span {
            name: "GET /health".into(),
            kind: 2,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_250_000_000,
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            attributes: vec![
                KeyValue {
                    key: "http.status_code".into(),
                    value: Some(AnyValue {
                        value: Some(AV::IntValue(503)),
                    }),
                    ..Default::default()
                },
                KeyValue {
                    key: "user".into(),
                    value: Some(data::string_value("ann@example.com")),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn check(src: &str) -> bool {
        let mut s = span();
        let mut res = Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(data::string_value("checkout")),
                ..Default::default()
            }],
            ..Default::default()
        });
        let t = SpanTarget {
            span: &mut s,
            resource: &mut res,
            scope: &None,
        };
        let e = parse_condition(ContextKind::Span, src).unwrap();
        truthy(&e, &t)
    }

    #[test]
    fn conditions_over_span_paths() {
        assert!(check(r#"name == "GET /health""#));
        assert!(check(r#"span.name == "GET /health""#));
        assert!(check("status.code == STATUS_CODE_ERROR"));
        assert!(!check("status.code == STATUS_CODE_OK"));
        assert!(check(
            "kind == SPAN_KIND_SERVER and attributes[\"http.status_code\"] >= 500"
        ));
        assert!(check(
            "end_time_unix_nano - start_time_unix_nano > 200000000"
        ));
        assert!(!check(
            "end_time_unix_nano - start_time_unix_nano > 300000000"
        ));
        assert!(check(r#"IsMatch(attributes["user"], ".*@example\\.com$")"#));
        assert!(check(
            r#"resource.attributes["service.name"] == "checkout""#
        ));
        assert!(check(r#"attributes["missing"] == nil"#));
        assert!(check(r#"not (attributes["missing"] != nil) or false"#));
        assert!(!check(r#"attributes["http.status_code"] == "503""#));
        assert!(check(r#"Len(name) == 11 and Int("7") + 1 == 8"#));
        assert!(check(r#"Concat([name, "x"], "-") == "GET /health-x""#));
    }

    #[test]
    fn severity_enums() {
        assert_eq!(enum_value("SEVERITY_NUMBER_WARN"), Some(13));
        assert_eq!(enum_value("SEVERITY_NUMBER_ERROR4"), Some(20));
        assert_eq!(enum_value("SEVERITY_NUMBER_TRACE"), Some(1));
        assert_eq!(enum_value("SEVERITY_NUMBER_WARN5"), None);
    }

    #[test]
    fn bad_conditions_are_refused_with_a_reason() {
        let err = |src: &str, ctx| parse_condition(ctx, src).unwrap_err().to_string();
        assert!(err("body == \"x\"", ContextKind::Span).contains("unknown path \"body\""));
        assert!(err("name ==", ContextKind::Span).contains("unexpected end"));
        assert!(
            err("IsMatch(name, \"(\")", ContextKind::Span).contains("invalid regular expression")
        );
        assert!(err("Foo(name)", ContextKind::Span).contains("unsupported function Foo"));
        assert!(err("name == \"a\" \"b\"", ContextKind::Span).contains("after the expression"));
        assert!(err("STATUS_CODE_BAD == 1", ContextKind::Span).contains("unknown enum"));
    }

    #[test]
    fn statements_edit_spans() {
        let mut s = span();
        let mut res = None;
        let run = |src: &str, s: &mut Span, res: &mut Option<Resource>| {
            let st = parse_statement(ContextKind::Span, src).unwrap();
            let mut t = SpanTarget {
                span: s,
                resource: res,
                scope: &None,
            };
            execute(&st, &mut t);
        };
        run(
            r#"set(attributes["tier"], "gold") where name == "GET /health""#,
            &mut s,
            &mut res,
        );
        run(
            r#"set(attributes["skipped"], 1) where name == "other""#,
            &mut s,
            &mut res,
        );
        run(
            r#"replace_pattern(attributes["user"], "^[^@]+", "***")"#,
            &mut s,
            &mut res,
        );
        run(
            r#"set(name, Concat(["span", name], ":"))"#,
            &mut s,
            &mut res,
        );
        run(
            r#"set(resource.attributes["env"], "prod")"#,
            &mut s,
            &mut res,
        );
        run(
            r#"delete_key(attributes, "http.status_code")"#,
            &mut s,
            &mut res,
        );
        assert_eq!(s.name, "span:GET /health");
        assert_eq!(
            data::get(&s.attributes, "tier"),
            Some(&data::string_value("gold"))
        );
        assert_eq!(data::get(&s.attributes, "skipped"), None);
        assert_eq!(
            data::get(&s.attributes, "user"),
            Some(&data::string_value("***@example.com"))
        );
        assert_eq!(data::get(&s.attributes, "http.status_code"), None);
        assert_eq!(
            data::get(&res.unwrap().attributes, "env"),
            Some(&data::string_value("prod"))
        );
        run(r#"keep_keys(attributes, ["tier"])"#, &mut s, &mut None);
        assert_eq!(s.attributes.len(), 1);
        run(r#"truncate_all(attributes, 2)"#, &mut s, &mut None);
        assert_eq!(
            data::get(&s.attributes, "tier"),
            Some(&data::string_value("go"))
        );
    }

    #[test]
    fn bad_statements() {
        let err = |src: &str| {
            parse_statement(ContextKind::Log, src)
                .unwrap_err()
                .to_string()
        };
        assert!(err("frobnicate(body)").contains("unsupported editor"));
        assert!(err("delete_key(body, \"x\")").contains("map path"));
        assert!(err("set(attributes, 1)").contains("is a path"));
        assert!(err("set(body, 1) where").contains("unexpected end"));
    }
}
