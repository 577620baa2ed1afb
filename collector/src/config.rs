//! Loading a pipeline file: TOML → `${VAR}` substitution → typed component configs → checks.
//!
//! Every error names the file, the line, the key and a reason a person can act on, e.g.
//! `configs/dev.toml:12:1: exporters.tempo.endpont: unknown field, expected one of ...`.

use crate::registry::{ExporterConfig, ProcessorConfig, ReceiverConfig, ServiceConfig};

use serde::Deserialize;
use sluice_core::{InvalidConfig, Signal};
use sluice_spool::SpoolConfig;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A loaded, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub source: PathBuf,
    /// The file as read, for change detection on reload.
    pub text: String,
    pub receivers: BTreeMap<String, ReceiverConfig>,
    pub processors: BTreeMap<String, ProcessorConfig>,
    pub exporters: BTreeMap<String, ExporterConfig>,
    pub pipelines: Vec<PipelineConfig>,
    /// Services (top-level sections such as `[awf_simulator]`), by section name.
    pub services: BTreeMap<String, ServiceConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Names the pipeline's spool directory and its metrics.
    pub name: String,
    pub signals: Vec<Signal>,
    pub receivers: Vec<String>,
    #[serde(default)]
    pub processors: Vec<String>,
    pub exporters: Vec<String>,
    #[serde(default)]
    pub spool: SpoolConfig,
}

/// The file's component tables and pipelines, with their positions. The services' sections
/// ([`ServiceConfig::SECTIONS`]) are taken from the plain table, and any other top-level key
/// is refused, by [`parse_toml`].
#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    receivers: BTreeMap<String, toml::Spanned<toml::Table>>,
    #[serde(default)]
    processors: BTreeMap<String, toml::Spanned<toml::Table>>,
    #[serde(default)]
    exporters: BTreeMap<String, toml::Spanned<toml::Table>>,
    #[serde(default)]
    pipelines: Vec<toml::Spanned<toml::Table>>,
}

const TOP_LEVEL_KEYS: &[&str] = &["receivers", "processors", "exporters", "pipelines"];

/// Looks up environment variables; a trait so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_owned(),
        line: 0,
        column: 0,
        key: String::new(),
        reason: format!("cannot read config file: {e}"),
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        (line, column)
    }

    fn at(&self, offset: usize, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        let (line, column) = self.line_col(offset);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Best-effort position of the top-level key `section`: its first `[section...]` header
    /// or `section... =` line.
    fn find_section(&self, section: &str) -> usize {
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let t = line.trim_start();
            let key = t.trim_start_matches('[').trim_start();
            if key
                .strip_prefix(section)
                .is_some_and(|r| r.starts_with(['.', ']', ' ', '=']))
            {
                return offset + (line.len() - t.len());
            }
            offset += line.len();
        }
        0
    }

    /// Best-effort position of `field` inside the table whose header starts at `table_start`:
    /// the first `field = ...` line or `[... .field]` header after it.
    fn find_field(&self, table_start: usize, field: &str) -> usize {
        let mut offset = table_start;
        for line in self.text[table_start.min(self.text.len())..].split_inclusive('\n') {
            let t = line.trim_start();
            // `field = ...`, or a dotted key that starts with it (`field.sub = ...`).
            let is_assign = t
                .strip_prefix(field)
                .map(|r| r.starts_with('.') || r.trim_start().starts_with('='))
                .unwrap_or(false)
                || t.strip_prefix(&format!("\"{field}\""))
                    .map(|r| r.trim_start().starts_with('='))
                    .unwrap_or(false);
            let is_header = t.starts_with('[') && t.contains(&format!(".{field}]"));
            if is_assign || is_header {
                return offset + (line.len() - t.len());
            }
            offset += line.len();
        }
        table_start
    }
}

/// Parses and checks a config from text. `path` is only used in messages and for reloads.
/// Alloy syntax (`.alloy`, `.river`, or a file that starts with a block) goes through
/// [`crate::alloy`], which maps it to TOML and reports errors against the Alloy file.
pub fn parse(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    if sluice_alloy::is_alloy(path, text) {
        return crate::alloy::parse(path, text, env);
    }
    parse_toml(path, text, env)
}

pub(crate) fn parse_toml(
    path: &Path,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let loc = Locator { file: path, text };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map(|s| s.start).unwrap_or(0);
        loc.at(offset, "", e.message().to_string())
    })?;

    let mut services = BTreeMap::new();
    let top_level: toml::Table = toml::from_str(text).map_err(|e| loc.at(0, "", e.message()))?;
    for (section, mut value) in top_level {
        if TOP_LEVEL_KEYS.contains(&section.as_str()) {
            continue;
        }
        let start = loc.find_section(&section);
        if !ServiceConfig::SECTIONS.contains(&section.as_str()) {
            let expected: Vec<String> = TOP_LEVEL_KEYS
                .iter()
                .chain(ServiceConfig::SECTIONS)
                .map(|k| format!("`{k}`"))
                .collect();
            return Err(loc.at(
                start,
                "",
                format!(
                    "unknown field `{section}`, expected one of {}",
                    expected.join(", ")
                ),
            ));
        }
        substitute(&loc, start, &section, &mut value, env)?;
        let service = ServiceConfig::parse(&section, value).map_err(|e| match e {
            ComponentError::Invalid(InvalidConfig { key, reason }) => {
                located(&loc, start, &section, &key, reason)
            }
            other => field_error(&loc, start, &section, &other.to_string()),
        })?;
        services.insert(section, service);
    }

    let mut receivers = BTreeMap::new();
    for (name, table) in raw.receivers {
        check_name(&loc, table.span().start, "receivers", &name)?;
        let (ty, body) = typed_body(&loc, "receivers", &name, table.clone(), env)?;
        let cfg = ReceiverConfig::parse(&ty, body)
            .map_err(|e| component_error(&loc, table.span().start, "receivers", &name, &ty, e))?;
        receivers.insert(name, cfg);
    }
    let mut processors = BTreeMap::new();
    for (name, table) in raw.processors {
        check_name(&loc, table.span().start, "processors", &name)?;
        let (ty, body) = typed_body(&loc, "processors", &name, table.clone(), env)?;
        let cfg = ProcessorConfig::parse(&ty, body)
            .map_err(|e| component_error(&loc, table.span().start, "processors", &name, &ty, e))?;
        processors.insert(name, cfg);
    }
    let mut exporters = BTreeMap::new();
    for (name, table) in raw.exporters {
        check_name(&loc, table.span().start, "exporters", &name)?;
        let (ty, body) = typed_body(&loc, "exporters", &name, table.clone(), env)?;
        let cfg = ExporterConfig::parse(&ty, body)
            .map_err(|e| component_error(&loc, table.span().start, "exporters", &name, &ty, e))?;
        exporters.insert(name, cfg);
    }

    let mut pipelines = Vec::new();
    let mut pipeline_offsets = Vec::new();
    for (i, table) in raw.pipelines.into_iter().enumerate() {
        let start = table.span().start;
        let key = format!("pipelines[{i}]");
        let mut value = toml::Value::Table(table.into_inner());
        substitute(&loc, start, &key, &mut value, env)?;
        let p = PipelineConfig::deserialize(value)
            .map_err(|e| field_error(&loc, start, &key, e.message()))?;
        p.spool.validate().map_err(|e| {
            let e = e.under("spool");
            located(&loc, start, &key, &e.key, e.reason)
        })?;
        pipelines.push(p);
        pipeline_offsets.push(start);
    }

    let config = Config {
        source: path.to_owned(),
        text: text.to_owned(),
        receivers,
        processors,
        exporters,
        pipelines,
        services,
    };
    check_wiring(&loc, &config, &pipeline_offsets)?;
    Ok(config)
}

fn check_name(loc: &Locator, offset: usize, kind: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(loc.at(
            offset,
            format!("{kind}.{name}"),
            "component names may only use letters, digits, '_' and '-'",
        ))
    }
}

/// Splits off `type`, substitutes `${VAR}` in the rest.
fn typed_body(
    loc: &Locator,
    kind: &str,
    name: &str,
    table: toml::Spanned<toml::Table>,
    env: EnvLookup<'_>,
) -> Result<(String, toml::Value), ConfigError> {
    let start = table.span().start;
    let mut table = table.into_inner();
    let key = format!("{kind}.{name}");
    let ty = match table.remove("type") {
        Some(toml::Value::String(t)) => t,
        Some(_) => {
            return Err(loc.at(
                loc.find_field(start, "type"),
                format!("{key}.type"),
                "must be a string",
            ));
        }
        None => {
            return Err(loc.at(
                start,
                key,
                "missing `type` (the component kind, e.g. type = \"otlp\")",
            ));
        }
    };
    let mut value = toml::Value::Table(table);
    substitute(loc, start, &key, &mut value, env)?;
    Ok((ty, value))
}

/// Why a component's table was refused.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("unknown type; known types: {}", known.join(", "))]
    UnknownType { known: &'static [&'static str] },
    /// A serde message (may name a field in backticks).
    #[error("{0}")]
    Field(String),
    /// A semantic check, with the key path below the component's table.
    #[error(transparent)]
    Invalid(InvalidConfig),
}

fn component_error(
    loc: &Locator,
    start: usize,
    kind: &str,
    name: &str,
    ty: &str,
    e: ComponentError,
) -> ConfigError {
    let key = format!("{kind}.{name}");
    match e {
        ComponentError::UnknownType { known } => loc.at(
            loc.find_field(start, "type"),
            format!("{key}.type"),
            format!(
                "unknown {} type {ty:?}; known types: {}",
                kind.trim_end_matches('s'),
                known.join(", ")
            ),
        ),
        ComponentError::Field(msg) => field_error(loc, start, &key, &msg),
        ComponentError::Invalid(InvalidConfig { key: field, reason }) => {
            located(loc, start, &key, &field, reason)
        }
    }
}

/// A check's error at `field` (a key path below the table at `start` named `key`; empty for
/// the table itself).
fn located(loc: &Locator, start: usize, key: &str, field: &str, reason: String) -> ConfigError {
    if field.is_empty() {
        return loc.at(start, key, reason);
    }
    // The line of the path's first segment, then of each next one below it (list indexes
    // such as `policies[0]` are looked up by their name).
    let at = field
        .split('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment))
        .fold(start, |at, segment| loc.find_field(at, segment));
    loc.at(at, format!("{key}.{field}"), reason)
}

/// Turns a serde message into a located error, finding the field it names.
fn field_error(loc: &Locator, start: usize, key: &str, msg: &str) -> ConfigError {
    let field = msg
        .split('`')
        .nth(1)
        .filter(|f| !f.is_empty() && !f.contains(' '));
    match field {
        Some(f) => loc.at(
            loc.find_field(start, f),
            format!("{key}.{f}"),
            msg.to_string(),
        ),
        None => loc.at(start, key.to_string(), msg.to_string()),
    }
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string value; `$${` stays a literal `${`.
fn substitute(
    loc: &Locator,
    start: usize,
    key: &str,
    value: &mut toml::Value,
    env: EnvLookup<'_>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains('$') => {
            *s = expand(s, env).map_err(|e| loc.at(start, key.to_string(), e.to_string()))?;
        }
        toml::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                substitute(loc, start, &format!("{key}[{i}]"), v, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let child = format!("{key}.{k}");
                let at = loc.find_field(start, k);
                substitute(loc, at, &child, v, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Why a `${VAR}` substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error("unclosed ${{ in {0:?}")]
    Unclosed(String),
    #[error("invalid variable name {name:?} in {text:?}")]
    InvalidName { name: String, text: String },
    #[error("environment variable {0} is not set (give a default with ${{{0}:-value}})")]
    Unset(String),
}

pub fn expand(s: &str, env: EnvLookup<'_>) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let end = body_start
            .find('}')
            .ok_or_else(|| ExpandError::Unclosed(s.to_owned()))?;
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ExpandError::InvalidName {
                name: name.to_owned(),
                text: s.to_owned(),
            });
        }
        match (
            env(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ExpandError::Unset(name.to_owned()));
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn check_wiring(loc: &Locator, config: &Config, offsets: &[usize]) -> Result<(), ConfigError> {
    // Watchers serve fixed HTTP paths on the admin server: two would claim the same ones.
    let mut watchers: Vec<(usize, &String)> = config
        .processors
        .iter()
        .filter(|(_, p)| p.watcher().is_some())
        .map(|(n, _)| (loc.text.find(&format!("[processors.{n}]")).unwrap_or(0), n))
        .collect();
    watchers.sort();
    if let [(_, first), (at, second), ..] = watchers.as_slice() {
        return Err(loc.at(
            *at,
            format!("processors.{second}"),
            format!("only one watcher per Sluice; processors.{first} is one already"),
        ));
    }
    let mut names = HashMap::new();
    for (i, p) in config.pipelines.iter().enumerate() {
        let start = offsets[i];
        let key = format!("pipelines[{i}]");
        let at = |field: &str, reason: String| {
            loc.at(
                loc.find_field(start, field),
                format!("{key}.{field}"),
                reason,
            )
        };
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(at(
                "name",
                "pipeline names may only use letters, digits, '_' and '-'".into(),
            ));
        }
        if let Some(prev) = names.insert(p.name.clone(), i) {
            return Err(at(
                "name",
                format!(
                    "pipeline name {:?} is already used by pipelines[{prev}]",
                    p.name
                ),
            ));
        }
        if p.signals.is_empty() {
            return Err(at(
                "signals",
                "a pipeline needs at least one signal: traces, metrics or logs".into(),
            ));
        }
        if p.receivers.is_empty() {
            return Err(at(
                "receivers",
                "a pipeline needs at least one receiver".into(),
            ));
        }
        if p.exporters.is_empty() {
            return Err(at(
                "exporters",
                "a pipeline needs at least one exporter".into(),
            ));
        }
        for r in &p.receivers {
            if !config.receivers.contains_key(r) {
                return Err(at(
                    "receivers",
                    format!("no receiver named {r:?} is defined (add [receivers.{r}])"),
                ));
            }
        }
        let mut batches = 0;
        for name in &p.processors {
            match config.processors.get(name) {
                None => {
                    return Err(at(
                        "processors",
                        format!("no processor named {name:?} is defined (add [processors.{name}])"),
                    ));
                }
                Some(pc) if pc.driver_batching().is_some() => batches += 1,
                Some(_) => {}
            }
        }
        if batches > 1 {
            return Err(at(
                "processors",
                "at most one batch processor per pipeline".into(),
            ));
        }
        for e in &p.exporters {
            let Some(exp) = config.exporters.get(e) else {
                return Err(at(
                    "exporters",
                    format!("no exporter named {e:?} is defined (add [exporters.{e}])"),
                ));
            };
            for s in &p.signals {
                if !exp.signals().contains(s) {
                    return Err(at(
                        "exporters",
                        format!(
                            "exporter {e:?} ({}) cannot export {s}; it takes {}",
                            exp.type_name(),
                            list(exp.signals())
                        ),
                    ));
                }
            }
        }
        let mut seen = p.exporters.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != p.exporters.len() {
            return Err(at("exporters", "an exporter is listed twice".into()));
        }
    }
    check_listeners(loc, config)
}

fn list(signals: &[Signal]) -> String {
    signals
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Two listeners on one port clash when their IPs are equal or either is a wildcard.
fn check_listeners(loc: &Locator, config: &Config) -> Result<(), ConfigError> {
    let mut seen: Vec<(String, SocketAddr)> = Vec::new();
    for (section, service) in &config.services {
        for (field, addr) in service.listen_addrs() {
            seen.push((format!("{section}.{field}"), addr));
        }
    }
    for (name, r) in &config.receivers {
        for (field, addr) in r.listen_addrs() {
            let key = format!("receivers.{name}.{field}");
            let clash = seen.iter().find(|(_, other)| {
                other.port() == addr.port()
                    && addr.port() != 0
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            });
            if let Some((other_key, _)) = clash {
                let start = loc.text.find(&format!("[receivers.{name}")).unwrap_or(0);
                let leaf = field.rsplit('.').next().unwrap_or(&field);
                return Err(loc.at(
                    loc.find_field(start, leaf),
                    key,
                    format!(
                        "{addr} is also used by {other_key}; two listeners cannot share an address"
                    ),
                ));
            }
            seen.push((key, addr));
        }
    }
    Ok(())
}

/// Parses a listen address (`host:port`, `:port`); host names are resolved now so a typo fails
/// at start.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, InvalidListenAddr> {
    let s = s.trim();
    let with_host = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    if let Ok(a) = with_host.parse::<SocketAddr>() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs;
    with_host
        .to_socket_addrs()
        .map_err(|source| InvalidListenAddr::Unresolvable {
            addr: s.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(|| InvalidListenAddr::ResolvesToNothing(s.to_owned()))
}

/// A listen address that cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum InvalidListenAddr {
    #[error("invalid listen address {addr:?}: {source} (use host:port, e.g. \"0.0.0.0:4317\")")]
    Unresolvable {
        addr: String,
        source: std::io::Error,
    },
    #[error("listen address {0:?} resolves to nothing")]
    ResolvesToNothing(String),
}
