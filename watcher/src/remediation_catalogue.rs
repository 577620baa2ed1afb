//! The remediation catalogue: the only actions the watcher can ever take.
//!
//! A script is one HTTP call or one argv command (never a shell). Its parameters come only
//! from alert labels and finding signals, and every value must fully match the parameter's
//! allow-list pattern; anything else refuses the action. Templates are checked when the
//! catalogue loads: every `{{name}}` is a declared parameter or a trusted `[vars]` constant,
//! parameters never choose a URL's scheme or host, and a command's program is a fixed
//! absolute path.

use crate::template::{Template, TemplateError, percent_encode_segment};
use serde::Deserialize;
use sluice_core::DurationStr;
use sluice_core::InvalidConfig;
use std::collections::BTreeMap;

/// The catalogue shipped with the watcher, aimed at AWF's control API (`{{awf_url}}`).
pub const DEFAULT_CATALOGUE: &str = include_str!("../catalogue.default.toml");

/// `catalogue = "/path/to/catalogue.toml"` or an inline table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CatalogueSource {
    Path(String),
    Inline(Catalogue),
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Trusted constants available to every template, e.g. `awf_url`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    #[serde(default)]
    pub scripts: BTreeMap<String, Script>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// What it does; shown to approvers and to the optional LLM ranker.
    #[serde(default)]
    pub description: String,
    /// A human must approve every run. Always true for `disable_agent` and `scale_workers`.
    #[serde(default)]
    pub requires_approval: bool,
    /// Deadline of one run. Default `"10s"`.
    #[serde(default = "default_timeout")]
    pub timeout: DurationStr,
    /// Parameter name → where it comes from and what it may look like.
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// An HTTP call (exactly one of `http` and `command`).
    #[serde(default)]
    pub http: Option<HttpCall>,
    /// An argv command: the first element is an absolute program path, run without a shell.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// How success is checked afterwards. Default `"alert"`.
    #[serde(default)]
    pub verify: VerifySpec,
    /// Overrides the config's default rate limit for this script.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// Sources tried in order: `label:<alert label>` or `finding:<finding signal>`.
    pub from: Vec<String>,
    /// Regular expression the whole value must match (anchored automatically).
    pub pattern: String,
    /// Used when no source has a value; must match `pattern` too.
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCall {
    /// Default `"POST"`.
    #[serde(default = "default_method")]
    pub method: String,
    /// URL template; parameters are percent-encoded and may only appear in the path or query.
    pub url: String,
    /// Header templates (values must stay valid header values).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; string leaves are templates, parameters inserted as JSON strings.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// How an action's effect is verified.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum VerifySpec {
    /// `"alert"`: re-query the alert's signal until it clears; `"none"`: no check.
    Mode(VerifyMode),
    /// The action started a new execution (its id is the response's `execution_from` field):
    /// wait in the live window for that execution's terminal event.
    Execution { execution_from: String },
}

impl Default for VerifySpec {
    fn default() -> Self {
        VerifySpec::Mode(VerifyMode::Alert)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    Alert,
    None,
}

/// At most `max` runs of a script per `per`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    pub per: DurationStr,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max: 5,
            per: DurationStr::from_secs(600),
        }
    }
}

impl RateLimit {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.max == 0 || self.per.get().is_zero() {
            return Err(InvalidConfig::new("", "needs max > 0 and per > 0"));
        }
        Ok(())
    }
}

fn default_timeout() -> DurationStr {
    DurationStr::from_secs(10)
}
fn default_method() -> String {
    "POST".into()
}

/// Scripts that always need a human (`docs/watcher.md` §6).
pub const ALWAYS_APPROVED: &[&str] = &["disable_agent", "scale_workers"];

/// Longest parameter value accepted, whatever the pattern says.
pub const MAX_PARAM_LEN: usize = 256;

impl Catalogue {
    pub fn parse(text: &str) -> Result<Catalogue, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn builtin() -> Result<Catalogue, toml::de::Error> {
        Catalogue::parse(DEFAULT_CATALOGUE)
    }

    pub fn script_names(&self) -> String {
        self.scripts.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Checks every script; keys start with `scripts.<name>` (the caller adds `catalogue`).
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        for (name, s) in &self.scripts {
            s.validate(name, &self.vars)
                .map_err(|e| e.under(&format!("scripts.{name}")))?;
        }
        Ok(())
    }
}

impl Script {
    /// Checks one script; keys are below the script's table.
    fn validate(&self, name: &str, vars: &BTreeMap<String, String>) -> Result<(), InvalidConfig> {
        if !valid_ident(name) {
            return Err(InvalidConfig::new("", "script names use a-z, 0-9 and _"));
        }
        if ALWAYS_APPROVED.contains(&name) && !self.requires_approval {
            return Err(InvalidConfig::new(
                "requires_approval",
                "must be true (a human approves it)",
            ));
        }
        if self.timeout.get().is_zero() || self.timeout.get() > std::time::Duration::from_secs(3600)
        {
            return Err(InvalidConfig::new("timeout", "must be within (0, 1h]"));
        }
        if let Some(r) = &self.rate_limit {
            r.validate().map_err(|e| e.under("rate_limit"))?;
        }
        for (pname, p) in &self.params {
            let at = |field: &str| {
                if field.is_empty() {
                    format!("params.{pname}")
                } else {
                    format!("params.{pname}.{field}")
                }
            };
            if !valid_ident(pname) || vars.contains_key(pname) {
                return Err(InvalidConfig::new(
                    at(""),
                    "names use a-z, 0-9 and _ and must differ from vars",
                ));
            }
            if p.from.is_empty() && p.default.is_none() {
                return Err(InvalidConfig::new(at(""), "needs `from` or `default`"));
            }
            for src in &p.from {
                let ok = src
                    .strip_prefix("label:")
                    .or_else(|| src.strip_prefix("finding:"))
                    .is_some_and(|rest| !rest.is_empty());
                if !ok {
                    return Err(InvalidConfig::new(
                        at("from"),
                        format!("{src:?} must be `label:<name>` or `finding:<name>`"),
                    ));
                }
            }
            let re = compile_anchored(&p.pattern)
                .map_err(|e| InvalidConfig::new(at("pattern"), e.to_string()))?;
            if let Some(d) = &p.default
                && check_value(&re, d).is_err()
            {
                return Err(InvalidConfig::new(
                    at("default"),
                    "does not match its pattern",
                ));
            }
        }
        let known = |n: &str| self.params.contains_key(n) || vars.contains_key(n);
        match (&self.http, &self.command) {
            (Some(h), None) => {
                http::Method::from_bytes(h.method.as_bytes()).map_err(|_| {
                    InvalidConfig::new("http.method", format!("{:?} is not a method", h.method))
                })?;
                let url_error = |e: TemplateError| InvalidConfig::new("http.url", e.to_string());
                let t = Template::parse(&h.url).map_err(url_error)?;
                t.check_names(&known).map_err(url_error)?;
                // Parameters may not reach the scheme or host: everything before the first
                // parameter must already contain `scheme://host/`.
                if let Some(prefix) = t.prefix_before(
                    |n| self.params.contains_key(n),
                    |n| vars.get(n).cloned().unwrap_or_default(),
                ) {
                    let host_done = prefix
                        .find("://")
                        .is_some_and(|i| prefix[i + 3..].contains('/'));
                    if !host_done {
                        return Err(InvalidConfig::new(
                            "http.url",
                            "parameters may only appear after `scheme://host/`",
                        ));
                    }
                }
                let sample = t.render(|n| vars.get(n).cloned().unwrap_or_else(|| "x".to_owned()));
                match reqwest::Url::parse(&sample) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                    _ => {
                        return Err(InvalidConfig::new(
                            "http.url",
                            format!("{sample:?} (with vars applied) is not an http(s) URL"),
                        ));
                    }
                }
                for (k, v) in &h.headers {
                    http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                        InvalidConfig::new("http.headers", format!("{k:?} is not a header name"))
                    })?;
                    Template::parse(v)
                        .and_then(|t| t.check_names(&known))
                        .map_err(|e| {
                            InvalidConfig::new(format!("http.headers.{k}"), e.to_string())
                        })?;
                }
                if let Some(b) = &h.body {
                    check_json_templates(b, &known)
                        .map_err(|e| InvalidConfig::new("http.body", e.to_string()))?;
                }
            }
            (None, Some(argv)) => {
                let Some(program) = argv.first() else {
                    return Err(InvalidConfig::new("command", "must not be empty"));
                };
                if !program.starts_with('/') || program.contains("{{") {
                    return Err(InvalidConfig::new(
                        "command[0]",
                        "must be a fixed absolute program path (no templates)",
                    ));
                }
                for a in argv {
                    Template::parse(a)
                        .and_then(|t| t.check_names(&known))
                        .map_err(|e| InvalidConfig::new("command", e.to_string()))?;
                }
            }
            _ => {
                return Err(InvalidConfig::new(
                    "",
                    "needs exactly one of `http` and `command`",
                ));
            }
        }
        if let VerifySpec::Execution { execution_from } = &self.verify
            && !valid_ident(execution_from)
        {
            return Err(InvalidConfig::new(
                "verify.execution_from",
                "must be a response field name",
            ));
        }
        Ok(())
    }
}

fn check_json_templates(
    v: &serde_json::Value,
    known: &dyn Fn(&str) -> bool,
) -> Result<(), TemplateError> {
    match v {
        serde_json::Value::String(s) => Template::parse(s).and_then(|t| t.check_names(&known)),
        serde_json::Value::Array(a) => a.iter().try_for_each(|x| check_json_templates(x, known)),
        serde_json::Value::Object(o) => o.values().try_for_each(|x| check_json_templates(x, known)),
        _ => Ok(()),
    }
}

pub(crate) fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Compiles `pattern` so that it must match a whole value.
pub fn compile_anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// Why a parameter value was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueError {
    TooLong,
    ControlCharacter,
    LeadingDash,
    PatternMismatch,
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ValueError::TooLong => "longer than 256 bytes",
            ValueError::ControlCharacter => "contains a control character",
            ValueError::LeadingDash => "starts with '-' (could be read as an option)",
            ValueError::PatternMismatch => "does not match the parameter's pattern",
        })
    }
}

/// The checks every parameter value passes before it reaches a template, whatever its pattern.
pub fn check_value(re: &regex::Regex, v: &str) -> Result<(), ValueError> {
    if v.len() > MAX_PARAM_LEN {
        return Err(ValueError::TooLong);
    }
    if v.chars().any(char::is_control) {
        return Err(ValueError::ControlCharacter);
    }
    if v.starts_with('-') {
        return Err(ValueError::LeadingDash);
    }
    if !re.is_match(v) {
        return Err(ValueError::PatternMismatch);
    }
    Ok(())
}

/// Why an action could not be rendered from a checked script.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("header {header} renders to an invalid value")]
    HeaderValue { header: String },
    #[error("script has neither http nor command")]
    NoAction,
}

/// A script with its patterns compiled.
#[derive(Debug, Clone)]
pub struct CompiledScript {
    pub name: String,
    pub script: Script,
    pub patterns: BTreeMap<String, regex::Regex>,
}

/// The catalogue ready to render actions.
#[derive(Debug, Clone)]
pub struct CompiledCatalogue {
    pub vars: BTreeMap<String, String>,
    pub scripts: BTreeMap<String, CompiledScript>,
}

impl CompiledCatalogue {
    /// Keys of errors are below the catalogue (`scripts.<name>...`).
    pub fn compile(c: &Catalogue) -> Result<CompiledCatalogue, InvalidConfig> {
        c.validate()?;
        let mut scripts = BTreeMap::new();
        for (name, s) in &c.scripts {
            let mut patterns = BTreeMap::new();
            for (p, def) in &s.params {
                let re = compile_anchored(&def.pattern).map_err(|e| {
                    InvalidConfig::new(format!("scripts.{name}.params.{p}.pattern"), e.to_string())
                })?;
                patterns.insert(p.clone(), re);
            }
            scripts.insert(
                name.clone(),
                CompiledScript {
                    name: name.clone(),
                    script: s.clone(),
                    patterns,
                },
            );
        }
        Ok(CompiledCatalogue {
            vars: c.vars.clone(),
            scripts,
        })
    }

    pub fn get(&self, name: &str) -> Option<&CompiledScript> {
        self.scripts.get(name)
    }
}

/// Where parameter values come from.
pub struct ParamSources<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub signals: &'a BTreeMap<String, String>,
}

/// The outcome of resolving a script's parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Every parameter has an allowed value.
    Ready(BTreeMap<String, String>),
    /// A parameter has no value anywhere: the script does not apply to this alert.
    Missing(String),
    /// A value exists but is not allowed: the action is refused (possible injection).
    Refused {
        param: String,
        source: String,
        value: String,
        reason: ValueError,
    },
}

impl CompiledScript {
    pub fn resolve(&self, src: &ParamSources<'_>) -> Resolution {
        let mut out = BTreeMap::new();
        for (name, p) in &self.script.params {
            let found = p.from.iter().find_map(|s| {
                let v = if let Some(l) = s.strip_prefix("label:") {
                    src.labels.get(l)
                } else if let Some(f) = s.strip_prefix("finding:") {
                    src.signals.get(f)
                } else {
                    None
                };
                v.map(|v| (s.clone(), v.clone()))
            });
            let (source, value) = match (found, &p.default) {
                (Some(f), _) => f,
                (None, Some(d)) => ("default".to_owned(), d.clone()),
                (None, None) => return Resolution::Missing(name.clone()),
            };
            let Some(re) = self.patterns.get(name) else {
                return Resolution::Missing(name.clone());
            };
            if let Err(reason) = check_value(re, &value) {
                return Resolution::Refused {
                    param: name.clone(),
                    source,
                    value: truncate_for_audit(&value),
                    reason,
                };
            }
            out.insert(name.clone(), value);
        }
        Resolution::Ready(out)
    }

    /// Renders the action for `params` (already validated by [`CompiledScript::resolve`]).
    pub fn render(
        &self,
        vars: &BTreeMap<String, String>,
        params: &BTreeMap<String, String>,
    ) -> Result<RenderedAction, RenderError> {
        let raw = |n: &str| {
            params
                .get(n)
                .or_else(|| vars.get(n))
                .cloned()
                .unwrap_or_default()
        };
        let kind = if let Some(h) = &self.script.http {
            let url_t = Template::parse(&h.url)?;
            let url = url_t.render(|n| match params.get(n) {
                Some(v) => percent_encode_segment(v),
                None => vars.get(n).cloned().unwrap_or_default(),
            });
            let parsed = reqwest::Url::parse(&url).map_err(|e| RenderError::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            let mut headers = BTreeMap::new();
            for (k, v) in &h.headers {
                let value = Template::parse(v)?.render(raw);
                http::HeaderValue::from_str(&value)
                    .map_err(|_| RenderError::HeaderValue { header: k.clone() })?;
                headers.insert(k.clone(), value);
            }
            let body = match &h.body {
                Some(b) => Some(render_json(b, &raw)?),
                None => None,
            };
            ActionKind::Http {
                method: h.method.to_ascii_uppercase(),
                url: parsed.to_string(),
                headers,
                body,
            }
        } else if let Some(argv) = &self.script.command {
            let mut out = Vec::with_capacity(argv.len());
            for a in argv {
                out.push(Template::parse(a)?.render(raw));
            }
            ActionKind::Command { argv: out }
        } else {
            return Err(RenderError::NoAction);
        };
        Ok(RenderedAction {
            script: self.name.clone(),
            params: params.clone(),
            kind,
            timeout_ms: u64::try_from(self.script.timeout.get().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

fn render_json(
    v: &serde_json::Value,
    raw: &dyn Fn(&str) -> String,
) -> Result<serde_json::Value, RenderError> {
    Ok(match v {
        serde_json::Value::String(s) => serde_json::Value::String(Template::parse(s)?.render(raw)),
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|x| render_json(x, raw))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => {
            let mut m = serde_json::Map::new();
            for (k, x) in o {
                m.insert(k.clone(), render_json(x, raw)?);
            }
            serde_json::Value::Object(m)
        }
        other => other.clone(),
    })
}

/// Keeps refused values readable and bounded in the audit log.
pub fn truncate_for_audit(v: &str) -> String {
    let mut s: String = v.chars().take(200).collect();
    if s.len() < v.len() {
        s.push('…');
    }
    s
}

/// A fully rendered action, recorded before it runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RenderedAction {
    pub script: String,
    pub params: BTreeMap<String, String>,
    pub kind: ActionKind,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ActionKind {
    Http {
        method: String,
        url: String,
        /// Values may hold secrets: [`RenderedAction::redacted`] removes them for the audit.
        headers: BTreeMap<String, String>,
        body: Option<serde_json::Value>,
    },
    Command {
        argv: Vec<String>,
    },
}

impl RenderedAction {
    /// The action as written to the audit log and shown to approvers (header values hidden).
    pub fn redacted(&self) -> RenderedAction {
        let mut r = self.clone();
        if let ActionKind::Http { headers, .. } = &mut r.kind {
            for v in headers.values_mut() {
                *v = "<redacted>".into();
            }
        }
        r
    }

    /// One line for humans: `POST http://…` or `/usr/bin/x a b`.
    pub fn summary(&self) -> String {
        match &self.kind {
            ActionKind::Http { method, url, .. } => format!("{method} {url}"),
            ActionKind::Command { argv } => argv.join(" "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(toml_text: &str) -> Result<Catalogue, InvalidConfig> {
        let c = Catalogue::parse(toml_text).unwrap();
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn builtin_catalogue_is_valid_and_complete() {
        let c = Catalogue::builtin().unwrap();
        c.validate().unwrap();
        for name in [
            "restart_workflow",
            "retry_step",
            "switch_fallback",
            "increase_timeout",
            "disable_agent",
            "scale_workers",
            "notify_oncall",
        ] {
            assert!(c.scripts.contains_key(name), "{name} missing");
        }
        assert!(c.scripts["disable_agent"].requires_approval);
        assert!(c.scripts["scale_workers"].requires_approval);
        assert!(!c.scripts["switch_fallback"].requires_approval);
    }

    #[test]
    fn parameters_cannot_choose_the_host() {
        let e = script(
            r#"[scripts.x]
http = { url = "http://{{host}}/a" }
params.host = { from = ["label:host"], pattern = "[a-z]+" }"#,
        )
        .unwrap_err();
        assert_eq!(e.key, "scripts.x.http.url");
        assert!(e.reason.contains("scheme://host/"), "{e}");
        let e = script(
            r#"[vars]
base = "http://awf:8000"
[scripts.x]
http = { url = "{{base}}{{p}}" }
params.p = { from = ["label:p"], pattern = "[a-z]+" }"#,
        )
        .unwrap_err();
        assert!(e.reason.contains("scheme://host/"), "{e}");
        script(
            r#"[vars]
base = "http://awf:8000"
[scripts.x]
http = { url = "{{base}}/agents/{{p}}/x" }
params.p = { from = ["label:p"], pattern = "[a-z]+" }"#,
        )
        .unwrap();
    }

    #[test]
    fn unknown_placeholders_and_shells_are_refused() {
        let e = script(
            r#"[scripts.x]
http = { url = "http://a/{{nope}}" }"#,
        )
        .unwrap_err();
        assert_eq!(e.key, "scripts.x.http.url");
        assert!(e.reason.contains("nope"), "{e}");
        let e = script(
            r#"[scripts.x]
command = ["sh", "-c", "echo"]"#,
        )
        .unwrap_err();
        assert_eq!(e.key, "scripts.x.command[0]");
        assert!(e.reason.contains("absolute"), "{e}");
        let e = script(
            r#"[scripts.disable_agent]
command = ["/bin/true"]"#,
        )
        .unwrap_err();
        assert_eq!(e.key, "scripts.disable_agent.requires_approval");
    }

    #[test]
    fn values_are_validated_and_encoded() {
        let c = script(
            r#"[vars]
base = "http://awf:8000"
[scripts.x]
http = { url = "{{base}}/agents/{{agent}}/fallback", body = { agent = "{{agent}}", n = 2 } }
params.agent = { from = ["label:agent_id", "finding:agent_id"], pattern = "[a-z0-9-]{1,32}" }"#,
        )
        .unwrap();
        let cc = CompiledCatalogue::compile(&c).unwrap();
        let s = cc.get("x").unwrap();
        let mut labels = BTreeMap::new();
        let signals = BTreeMap::from([("agent_id".to_owned(), "writer".to_owned())]);
        let r = s.resolve(&ParamSources {
            labels: &labels,
            signals: &signals,
        });
        let Resolution::Ready(p) = r else {
            panic!("{r:?}")
        };
        let a = s.render(&cc.vars, &p).unwrap();
        assert_eq!(a.summary(), "POST http://awf:8000/agents/writer/fallback");
        let ActionKind::Http { body, .. } = &a.kind else {
            panic!()
        };
        assert_eq!(body.as_ref().unwrap()["n"], 2);
        for evil in [
            "writer; rm -rf /",
            "../sim/faults",
            "writer\nX-Injected: 1",
            "-rf",
            "writer%2F..",
            "$(reboot)",
        ] {
            labels.insert("agent_id".into(), evil.into());
            let r = s.resolve(&ParamSources {
                labels: &labels,
                signals: &signals,
            });
            assert!(matches!(r, Resolution::Refused { .. }), "{evil:?} → {r:?}");
        }
        labels.clear();
        let no = BTreeMap::new();
        assert_eq!(
            s.resolve(&ParamSources {
                labels: &labels,
                signals: &no
            }),
            Resolution::Missing("agent".into())
        );
    }
}
