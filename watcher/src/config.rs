//! The `type = "watcher"` processor's configuration.
//!
//! Every key is optional except what intake security needs: at least one of `bearer_token`,
//! `basic_auth` and `hmac_secret` (webhook endpoints require a secret;
//! `docs/watcher.md` §1). Unknown keys
//! are refused; `validate` names the key of every semantic error.

use crate::remediation_catalogue::{Catalogue, CatalogueSource, RateLimit};
use serde::Deserialize;
use sluice_core::InvalidConfig;
use sluice_core::{ByteSize, DurationStr};
use std::collections::BTreeMap;

/// The watcher's settings (`[processors.<name>]` with `type = "watcher"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    // ---- intake auth (webhooks) ----
    /// `Authorization: Bearer <token>` accepted on the webhook paths. Default: none.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// HTTP basic credentials accepted on the webhook paths. Default: none.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Grafana's HMAC-SHA256 signature secret (lowercase hex of HMAC(secret, body)). Default:
    /// none.
    #[serde(default)]
    pub hmac_secret: Option<String>,
    /// Header carrying the signature. Default `"X-Grafana-Alerting-Signature"`.
    #[serde(default = "default_hmac_header")]
    pub hmac_header: String,
    /// Header carrying the Unix-seconds timestamp; when set the signed message is
    /// `timestamp + ":" + body` and stale or future timestamps are refused. Default: none.
    #[serde(default)]
    pub hmac_timestamp_header: Option<String>,
    /// How far a signed timestamp may be from now, and how long a signature is remembered to
    /// refuse its replay. Default `"5m"`.
    #[serde(default = "default_replay_window")]
    pub replay_window: DurationStr,
    /// Largest webhook body accepted (413 above). Default `"1MiB"`.
    #[serde(default = "default_max_body")]
    pub max_body_size: ByteSize,

    // ---- approvals ----
    /// People who may read incidents and approve or reject actions; each authenticates with
    /// `Authorization: Bearer <token>`. Default: none (then nothing needing approval runs).
    #[serde(default)]
    pub approvers: Vec<Approver>,
    /// A pending approval not decided within this time expires and never runs. Default `"1h"`.
    #[serde(default = "default_approval_expiry")]
    pub approval_expiry: DurationStr,
    /// Slack-compatible incoming-webhook URL notified of new approvals (`{"text": …}`).
    /// Default: none.
    #[serde(default)]
    pub approval_webhook: Option<String>,

    // ---- backends ----
    /// Prometheus or Mimir base URL (Mimir: include `/prometheus`). Default: none.
    #[serde(default)]
    pub prometheus_url: Option<String>,
    /// Loki base URL. Default: none.
    #[serde(default)]
    pub loki_url: Option<String>,
    /// Tempo base URL (query frontend). Default: none.
    #[serde(default)]
    pub tempo_url: Option<String>,
    /// `X-Scope-OrgID` sent to Prometheus/Mimir, Loki and Tempo. Default: none.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Grafana base URL for annotations. Default: none (no annotations).
    #[serde(default)]
    pub grafana_url: Option<String>,
    /// Grafana service-account token (`annotations:read`, `annotations:write`).
    #[serde(default)]
    pub grafana_token: Option<String>,
    /// mcp-grafana streamable-HTTP endpoint (`http://mcp-grafana:8000/mcp`), used as an extra
    /// source when set. Default: none.
    #[serde(default)]
    pub mcp_url: Option<String>,
    /// Bearer token for mcp-grafana's `--server-auth-token`. Default: none.
    #[serde(default)]
    pub mcp_token: Option<String>,
    /// Prometheus datasource UID used with mcp-grafana's `query_prometheus`. Default
    /// `"prometheus"`.
    #[serde(default = "default_mcp_uid")]
    pub mcp_prometheus_uid: String,
    /// Whole investigation deadline (`docs/watcher.md` §3: under 5 s). Default `"5s"`.
    #[serde(default = "default_budget")]
    pub investigation_budget: DurationStr,
    /// Deadline of one source (a query), within the budget. Default `"2s"`.
    #[serde(default = "default_source_timeout")]
    pub source_timeout: DurationStr,
    /// Queries look this far back before the alert's `startsAt`. Default `"15m"`.
    #[serde(default = "default_lookback")]
    pub lookback: DurationStr,

    // ---- decision and action ----
    /// Remediation catalogue: a path to a TOML file or an inline table. Default: the built-in
    /// catalogue (`watcher/catalogue.default.toml`) aimed at AWF's control API.
    #[serde(default)]
    pub catalogue: Option<CatalogueSource>,
    /// Trusted constants for templates (`{{awf_url}}`); override the catalogue's `[vars]`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Rules mapping alerts and findings to candidate actions, first match wins.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Optional OpenAI-compatible endpoint that only reorders a rule's candidates.
    #[serde(default)]
    pub llm: Option<LlmConfig>,
    /// Decide and record, but never run an action. Default `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// Global stop: no action runs while engaged (also switchable at runtime). Default `false`.
    #[serde(default)]
    pub kill_switch: bool,
    /// Rate limits by script name; `default` applies to scripts not listed. Default: 5 runs
    /// per 10 minutes per script.
    #[serde(default)]
    pub rate_limit: BTreeMap<String, RateLimit>,
    /// How the alert's signal is re-checked after an action.
    #[serde(default)]
    pub verification: VerificationConfig,

    // ---- runtime bounds ----
    /// The live-stream window.
    #[serde(default)]
    pub window: WindowConfig,
    /// Investigations run at once (waiting for approvals or verifications does not count).
    /// Default `8`.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_incidents: usize,
    /// How long a finished incident key is remembered for de-duplication (≥ Alertmanager's
    /// `repeat_interval` 4h + slack). Default `"5h"`.
    #[serde(default = "default_dedup_ttl")]
    pub dedup_ttl: DurationStr,
    /// `service.name` of the watcher's own spans and logs. Default `"sluice-watcher"`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    /// Recorded as the approver identity.
    pub name: String,
    pub token: String,
}

/// One rule: all `labels` and `findings` matchers must match; `actions` are the candidates in
/// preference order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// Alert label → regular expression matching the whole value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Finding signal (`cause`, `agent_id`, `error_type`, …) → regular expression.
    #[serde(default)]
    pub findings: BTreeMap<String, String>,
    /// Candidate catalogue scripts, most preferred first. Empty: record only.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Script run when the chosen action fails or does not clear the signal.
    #[serde(default)]
    pub escalate: Option<String>,
    /// PromQL re-checked after the action: the signal has recovered when it returns no series
    /// (or only zeros). `{{label}}` inserts an alert label, escaped. Default: the alert's
    /// `watcher_query` annotation.
    #[serde(default)]
    pub verify_query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL of an OpenAI-compatible API (`…/v1`); `/chat/completions` is appended.
    pub url: String,
    pub model: String,
    #[serde(default)]
    pub api_key: Option<String>,
    /// Default `"3s"`; on timeout or any error the rule's order is kept.
    #[serde(default = "default_llm_timeout")]
    pub timeout: DurationStr,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerificationConfig {
    /// Wait before the first re-check (rate windows need time to forget). Default `"30s"`.
    #[serde(default = "default_verify_delay")]
    pub delay: DurationStr,
    /// Re-check period. Default `"10s"`.
    #[serde(default = "default_verify_interval")]
    pub interval: DurationStr,
    /// Give up (not recovered) after this long. Default `"5m"`.
    #[serde(default = "default_verify_timeout")]
    pub timeout: DurationStr,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        VerificationConfig {
            delay: default_verify_delay(),
            interval: default_verify_interval(),
            timeout: default_verify_timeout(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Observations (spans, log records) kept. Default `100000`.
    #[serde(default = "default_window_events")]
    pub max_events: usize,
    /// Observations older than this are forgotten. Default `"15m"`.
    #[serde(default = "default_window_age")]
    pub max_age: DurationStr,
    /// Items waiting to be decoded; beyond it observations are skipped (the items still pass).
    /// Default `4096`.
    #[serde(default = "default_window_queue")]
    pub queue: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            max_events: default_window_events(),
            max_age: default_window_age(),
            queue: default_window_queue(),
        }
    }
}

fn default_hmac_header() -> String {
    "X-Grafana-Alerting-Signature".into()
}
fn default_replay_window() -> DurationStr {
    DurationStr::from_secs(300)
}
fn default_max_body() -> ByteSize {
    ByteSize::mib(1)
}
fn default_approval_expiry() -> DurationStr {
    DurationStr::from_secs(3600)
}
fn default_mcp_uid() -> String {
    "prometheus".into()
}
fn default_budget() -> DurationStr {
    DurationStr::from_secs(5)
}
fn default_source_timeout() -> DurationStr {
    DurationStr::from_secs(2)
}
fn default_lookback() -> DurationStr {
    DurationStr::from_secs(15 * 60)
}
fn default_llm_timeout() -> DurationStr {
    DurationStr::from_secs(3)
}
fn default_verify_delay() -> DurationStr {
    DurationStr::from_secs(30)
}
fn default_verify_interval() -> DurationStr {
    DurationStr::from_secs(10)
}
fn default_verify_timeout() -> DurationStr {
    DurationStr::from_secs(300)
}
fn default_window_events() -> usize {
    100_000
}
fn default_window_age() -> DurationStr {
    DurationStr::from_secs(15 * 60)
}
fn default_window_queue() -> usize {
    4096
}
fn default_concurrency() -> usize {
    8
}
fn default_dedup_ttl() -> DurationStr {
    DurationStr::from_secs(5 * 3600)
}
fn default_service_name() -> String {
    "sluice-watcher".into()
}

impl Config {
    /// A config with the given bearer token and every other key at its default (for tests and
    /// embedding).
    pub fn with_bearer_token(token: &str) -> Config {
        Config {
            bearer_token: Some(token.to_owned()),
            ..Config::default()
        }
    }

    /// Semantic checks; every message starts with the offending key.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.bearer_token.is_none() && self.basic_auth.is_none() && self.hmac_secret.is_none() {
            return Err(InvalidConfig::new(
                "bearer_token",
                "bearer_token (or basic_auth or hmac_secret) is required: the webhook \
                 endpoints must not accept unauthenticated alerts",
            ));
        }
        non_empty_secret("bearer_token", self.bearer_token.as_deref())?;
        non_empty_secret("hmac_secret", self.hmac_secret.as_deref())?;
        if let Some(b) = &self.basic_auth {
            if b.username.is_empty() || b.password.is_empty() {
                return Err(InvalidConfig::new(
                    "basic_auth",
                    "needs a non-empty username and password",
                ));
            }
            if b.username.contains(':') {
                return Err(InvalidConfig::new(
                    "basic_auth.username",
                    "must not contain ':'",
                ));
            }
        }
        header_name("hmac_header", &self.hmac_header)?;
        if let Some(h) = &self.hmac_timestamp_header {
            header_name("hmac_timestamp_header", h)?;
        }
        if self.replay_window.get().is_zero() {
            return Err(InvalidConfig::new(
                "replay_window",
                "must be greater than 0",
            ));
        }
        if self.max_body_size.get() < 1024 {
            return Err(InvalidConfig::new("max_body_size", "must be at least 1KiB"));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut tokens = std::collections::BTreeSet::new();
        for a in &self.approvers {
            if a.name.trim().is_empty() {
                return Err(InvalidConfig::new("approvers.name", "must not be empty"));
            }
            if a.token.len() < 8 {
                return Err(InvalidConfig::new(
                    "approvers.token",
                    format!("of {:?} must be at least 8 characters", a.name),
                ));
            }
            if !names.insert(a.name.as_str()) {
                return Err(InvalidConfig::new(
                    "approvers.name",
                    format!("{:?} appears twice", a.name),
                ));
            }
            if !tokens.insert(a.token.as_str()) {
                return Err(InvalidConfig::new(
                    "approvers.token",
                    "must be unique per approver",
                ));
            }
        }
        if self.approval_expiry.get().is_zero() {
            return Err(InvalidConfig::new(
                "approval_expiry",
                "must be greater than 0",
            ));
        }
        for (key, url) in [
            ("approval_webhook", &self.approval_webhook),
            ("prometheus_url", &self.prometheus_url),
            ("loki_url", &self.loki_url),
            ("tempo_url", &self.tempo_url),
            ("grafana_url", &self.grafana_url),
            ("mcp_url", &self.mcp_url),
        ] {
            if let Some(u) = url {
                check_url(key, u)?;
            }
        }
        if self.grafana_url.is_some() != self.grafana_token.is_some() {
            return Err(InvalidConfig::new(
                if self.grafana_url.is_some() {
                    "grafana_token"
                } else {
                    "grafana_url"
                },
                "grafana_token and grafana_url must be set together",
            ));
        }
        if self.investigation_budget.get().is_zero() {
            return Err(InvalidConfig::new(
                "investigation_budget",
                "must be greater than 0",
            ));
        }
        if self.source_timeout.get().is_zero() {
            return Err(InvalidConfig::new(
                "source_timeout",
                "must be greater than 0",
            ));
        }
        if let Some(llm) = &self.llm {
            check_url("llm.url", &llm.url)?;
            if llm.model.is_empty() {
                return Err(InvalidConfig::new("llm.model", "must not be empty"));
            }
            if llm.timeout.get().is_zero() {
                return Err(InvalidConfig::new("llm.timeout", "must be greater than 0"));
            }
        }
        // Deadlines are added to clock readings: keep them sane (and overflow-free).
        let day = std::time::Duration::from_secs(86_400);
        for (key, d, max) in [
            ("investigation_budget", self.investigation_budget, day / 24),
            ("source_timeout", self.source_timeout, day / 24),
            ("approval_expiry", self.approval_expiry, day * 30),
            ("verification.delay", self.verification.delay, day),
            ("verification.interval", self.verification.interval, day),
            ("verification.timeout", self.verification.timeout, day),
            ("replay_window", self.replay_window, day),
            ("dedup_ttl", self.dedup_ttl, day * 365),
        ] {
            if d.get() > max {
                return Err(InvalidConfig::new(key, format!("must be at most {max:?}")));
            }
        }
        if let Some(l) = &self.llm
            && l.timeout.get() > day / 24
        {
            return Err(InvalidConfig::new("llm.timeout", "must be at most 1h"));
        }
        let v = &self.verification;
        if v.interval.get().is_zero() || v.timeout.get().is_zero() {
            return Err(InvalidConfig::new(
                if v.interval.get().is_zero() {
                    "verification.interval"
                } else {
                    "verification.timeout"
                },
                "must be greater than 0",
            ));
        }
        if self.window.max_events == 0 || self.window.queue == 0 {
            return Err(InvalidConfig::new(
                if self.window.max_events == 0 {
                    "window.max_events"
                } else {
                    "window.queue"
                },
                "must be greater than 0",
            ));
        }
        if self.window.max_age.get().is_zero() {
            return Err(InvalidConfig::new(
                "window.max_age",
                "must be greater than 0",
            ));
        }
        if self.max_concurrent_incidents == 0 {
            return Err(InvalidConfig::new(
                "max_concurrent_incidents",
                "must be greater than 0",
            ));
        }
        if self.service_name.is_empty() {
            return Err(InvalidConfig::new("service_name", "must not be empty"));
        }
        for (name, rl) in &self.rate_limit {
            rl.validate()
                .map_err(|e| e.under(&format!("rate_limit.{name}")))?;
        }
        // The catalogue and rules are checked together: rules may only name known scripts.
        let catalogue = self.load_catalogue()?;
        for name in self.rate_limit.keys() {
            if name != "default" && !catalogue.scripts.contains_key(name) {
                return Err(InvalidConfig::new(
                    format!("rate_limit.{name}"),
                    format!(
                        "names no catalogue script (known: {})",
                        catalogue.script_names()
                    ),
                ));
            }
        }
        crate::rules::RuleSet::compile(&self.rules, &catalogue).map(|_| ())
    }

    /// The catalogue this config uses (file, inline, or the built-in default), with `vars`
    /// applied and checked.
    /// Errors have the key `catalogue`; the reason names the place inside the catalogue.
    pub fn load_catalogue(&self) -> Result<Catalogue, InvalidConfig> {
        let (mut c, file) = match &self.catalogue {
            None => (
                Catalogue::builtin().map_err(|e| {
                    InvalidConfig::new("catalogue", format!("the built-in catalogue: {e}"))
                })?,
                None,
            ),
            Some(CatalogueSource::Inline(c)) => (c.clone(), None),
            Some(CatalogueSource::Path(p)) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    InvalidConfig::new("catalogue", format!("cannot read {p:?}: {e}"))
                })?;
                let c = Catalogue::parse(&text)
                    .map_err(|e| InvalidConfig::new("catalogue", format!("{p}: {e}")))?;
                (c, Some(p))
            }
        };
        for (k, v) in &self.vars {
            c.vars.insert(k.clone(), v.clone());
        }
        // Inline: the key path reaches into this config; from a file: the reason names the
        // file and the key inside it.
        c.validate().map_err(|e| match file {
            Some(p) => InvalidConfig::new("catalogue", format!("{p}: {e}")),
            None => e.under("catalogue"),
        })?;
        Ok(c)
    }

    /// The rate limit of `script`.
    pub fn rate_limit_for(&self, script: &str, catalogue: &Catalogue) -> RateLimit {
        self.rate_limit
            .get(script)
            .or_else(|| {
                catalogue
                    .scripts
                    .get(script)
                    .and_then(|s| s.rate_limit.as_ref())
            })
            .or_else(|| self.rate_limit.get("default"))
            .cloned()
            .unwrap_or_default()
    }
}

/// Every key at its default (no auth, so `validate` refuses it until one is set).
impl Default for Config {
    fn default() -> Config {
        Config {
            bearer_token: None,
            basic_auth: None,
            hmac_secret: None,
            hmac_header: default_hmac_header(),
            hmac_timestamp_header: None,
            replay_window: default_replay_window(),
            max_body_size: default_max_body(),
            approvers: Vec::new(),
            approval_expiry: default_approval_expiry(),
            approval_webhook: None,
            prometheus_url: None,
            loki_url: None,
            tempo_url: None,
            tenant_id: None,
            grafana_url: None,
            grafana_token: None,
            mcp_url: None,
            mcp_token: None,
            mcp_prometheus_uid: default_mcp_uid(),
            investigation_budget: default_budget(),
            source_timeout: default_source_timeout(),
            lookback: default_lookback(),
            catalogue: None,
            vars: BTreeMap::new(),
            rules: Vec::new(),
            llm: None,
            dry_run: false,
            kill_switch: false,
            rate_limit: BTreeMap::new(),
            verification: VerificationConfig::default(),
            window: WindowConfig::default(),
            max_concurrent_incidents: default_concurrency(),
            dedup_ttl: default_dedup_ttl(),
            service_name: default_service_name(),
        }
    }
}

fn non_empty_secret(key: &str, v: Option<&str>) -> Result<(), InvalidConfig> {
    if v.is_some_and(|s| s.trim().is_empty()) {
        return Err(InvalidConfig::new(key, "must not be empty"));
    }
    Ok(())
}

fn header_name(key: &str, v: &str) -> Result<(), InvalidConfig> {
    http::HeaderName::from_bytes(v.as_bytes())
        .map(|_| ())
        .map_err(|_| InvalidConfig::new(key, format!("{v:?} is not a valid HTTP header name")))
}

pub(crate) fn check_url(key: &str, s: &str) -> Result<(), InvalidConfig> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(InvalidConfig::new(
            key,
            format!("{s:?} must be an http:// or https:// URL"),
        )),
        Err(e) => Err(InvalidConfig::new(key, format!("{s:?} is not a URL: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn defaults_and_required_auth() {
        let c = parse("bearer_token = \"t\"").unwrap();
        assert_eq!(c.hmac_header, "X-Grafana-Alerting-Signature");
        assert_eq!(c.replay_window.get(), std::time::Duration::from_secs(300));
        assert_eq!(
            c.approval_expiry.get(),
            std::time::Duration::from_secs(3600)
        );
        assert_eq!(
            c.investigation_budget.get(),
            std::time::Duration::from_secs(5)
        );
        assert!(!c.dry_run && !c.kill_switch);
        let e = parse("").unwrap_err();
        assert!(e.to_string().starts_with("bearer_token"), "{e}");
        assert!(parse("bearer_token = \"t\"\ntypo = 1").is_err());
    }

    #[test]
    fn errors_carry_the_key() {
        for (text, key) in [
            (
                "hmac_secret = \"s\"\nhmac_header = \"bad header\"",
                "hmac_header",
            ),
            (
                "bearer_token = \"t\"\nprometheus_url = \"ftp://x\"",
                "prometheus_url",
            ),
            (
                "bearer_token = \"t\"\ngrafana_url = \"http://g\"",
                "grafana_token",
            ),
            (
                "bearer_token = \"t\"\napprovers = [{ name = \"a\", token = \"short\" }]",
                "approvers.token",
            ),
            (
                "bearer_token = \"t\"\nrate_limit = { nope = { max = 1, per = \"1m\" } }",
                "rate_limit.nope",
            ),
            (
                "bearer_token = \"t\"\nrate_limit = { default = { max = 0, per = \"1m\" } }",
                "rate_limit.default",
            ),
            (
                "bearer_token = \"t\"\ncatalogue = \"/nonexistent/c.toml\"",
                "catalogue",
            ),
            (
                "bearer_token = \"t\"\nverification = { timeout = \"1000d\" }",
                "verification.timeout",
            ),
            (
                "bearer_token = \"t\"\n[[rules]]\nname = \"r\"\nactions = [\"rm_rf\"]",
                "rules[0].actions",
            ),
            (
                "bearer_token = \"t\"\n[[rules]]\nname = \"r\"\nlabels = { a = \"(\" }\nactions = []",
                "rules[0].labels.a",
            ),
        ] {
            let c: Config = toml::from_str(text).unwrap();
            let e = c.validate().unwrap_err();
            assert_eq!(e.key, key, "{text:?} → {e}");
        }
    }

    #[test]
    fn inline_catalogue_and_vars() {
        let c = parse(
            r#"bearer_token = "t"
vars = { base = "http://awf:8000" }
[catalogue.scripts.ping]
http = { method = "GET", url = "{{base}}/health" }
verify = "none"
[catalogue.scripts.page]
command = ["/usr/local/bin/page", "{{who}}"]
params.who = { from = ["label:team"], pattern = "[a-z]+" }
[[rules]]
name = "r"
actions = ["ping", "page"]
"#,
        )
        .unwrap();
        let cat = c.load_catalogue().unwrap();
        assert_eq!(cat.vars["base"], "http://awf:8000");
        assert_eq!(cat.scripts.len(), 2);
        assert_eq!(c.rate_limit_for("ping", &cat), RateLimit::default());
    }
}
