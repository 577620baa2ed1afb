//! `transform`: runs OTTL statements on spans, metrics, data points, log records and
//! resources, with the configuration shape of the OpenTelemetry Collector's transform processor.
//! The language subset is [`crate::ottl`]'s.
//!
//! ```toml
//! [[processors.tidy.log_statements]]
//! context = "log"
//! statements = ['set(severity_text, "WARN") where severity_number == SEVERITY_NUMBER_WARN']
//! ```

use crate::filter::ErrorMode;
use crate::ottl::{self, ContextKind, Statement};
use crate::{BuildError, Context, Request, RequestProcessor, Stage};
use serde::Deserialize;
use sluice_core::{InvalidConfig, Refusal, Signal};
use std::sync::Arc;

pub const TYPE_NAME: &str = "transform";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextStatements {
    /// `resource`, `span` (traces), `metric`, `datapoint` (metrics), `log` (logs).
    pub context: String,
    pub statements: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Accepted for compatibility; statements never fail to evaluate (see `filter`).
    #[serde(default)]
    pub error_mode: ErrorMode,
    #[serde(default)]
    pub trace_statements: Vec<ContextStatements>,
    #[serde(default)]
    pub metric_statements: Vec<ContextStatements>,
    #[serde(default)]
    pub log_statements: Vec<ContextStatements>,
}

impl sluice_core::ComponentConfig for Config {}

type Compiled = Vec<(Signal, ContextKind, Vec<Statement>)>;

fn compile_list(
    field: &str,
    signal: Signal,
    allowed: &[ContextKind],
    groups: &[ContextStatements],
    out: &mut Compiled,
) -> Result<(), InvalidConfig> {
    for (i, g) in groups.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(ctx) = allowed.iter().copied().find(|c| c.name() == g.context) else {
            let names: Vec<&str> = allowed.iter().map(|c| c.name()).collect();
            return Err(InvalidConfig::new(
                format!("{at}.context"),
                format!("{:?}: {field} run in {}", g.context, names.join(", ")),
            ));
        };
        let statements = g
            .statements
            .iter()
            .enumerate()
            .map(|(j, src)| {
                ottl::parse_statement(ctx, src).map_err(|e| {
                    InvalidConfig::new(format!("{at}.statements[{j}]"), format!("{src:?}: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((signal, ctx, statements));
    }
    Ok(())
}

impl Config {
    fn compile(&self) -> Result<Compiled, InvalidConfig> {
        use ContextKind as C;
        let mut out = Vec::new();
        compile_list(
            "trace_statements",
            Signal::Traces,
            &[C::Resource, C::Span],
            &self.trace_statements,
            &mut out,
        )?;
        compile_list(
            "metric_statements",
            Signal::Metrics,
            &[C::Resource, C::Metric, C::DataPoint],
            &self.metric_statements,
            &mut out,
        )?;
        compile_list(
            "log_statements",
            Signal::Logs,
            &[C::Resource, C::Log],
            &self.log_statements,
            &mut out,
        )?;
        if out.iter().all(|(_, _, s)| s.is_empty()) {
            return Err(InvalidConfig::new(
                "",
                "give at least one statement in trace_statements, metric_statements or log_statements",
            ));
        }
        Ok(out)
    }

    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.compile().map(|_| ())
    }
}

pub struct Transform {
    groups: Compiled,
}

pub fn build(config: &Config, _ctx: Context) -> Result<Stage, BuildError> {
    Ok(Stage::Request(Arc::new(Transform {
        groups: config.compile()?,
    })))
}

impl RequestProcessor for Transform {
    fn applies_to(&self, signal: Signal) -> bool {
        self.groups.iter().any(|(s, _, _)| *s == signal)
    }

    fn process(&self, request: &mut Request) -> Result<(), Refusal> {
        let signal = request.signal();
        for (_, ctx, statements) in self.groups.iter().filter(|(s, _, _)| *s == signal) {
            ottl::for_each(request, *ctx, |t| {
                for s in statements {
                    ottl::execute(s, t);
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    #[test]
    fn log_and_resource_statements() {
        let cfg: Config = toml::from_str(
            r#"
            [[log_statements]]
            context = "resource"
            statements = ['set(attributes["deployment.environment"], "prod")']
            [[log_statements]]
            context = "log"
            statements = [
              'set(severity_text, "WARN") where severity_number == SEVERITY_NUMBER_WARN',
              'replace_pattern(body, "password=\\S+", "password=***")',
              'set(attributes["body.length"], Len(body))',
            ]
            "#,
        )
        .unwrap();
        let Stage::Request(t) = build(&cfg, Context::new("processors.t", "p")).unwrap() else {
            panic!("transform works on decoded requests")
        };
        let mut r = Request::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        severity_number: 13,
                        body: Some(data::string_value("login password=hunter2 ok")),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        assert!(!t.applies_to(Signal::Traces));
        t.process(&mut r).unwrap();
        let Request::Logs(l) = r else { panic!() };
        let rl = &l.resource_logs[0];
        assert_eq!(
            data::get(
                &rl.resource.as_ref().unwrap().attributes,
                "deployment.environment"
            ),
            Some(&data::string_value("prod"))
        );
        let log = &rl.scope_logs[0].log_records[0];
        assert_eq!(log.severity_text, "WARN");
        assert_eq!(log.body, Some(data::string_value("login password=*** ok")));
        assert_eq!(
            data::get(&log.attributes, "body.length").map(data::value_text),
            Some("21".to_string())
        );
    }

    #[test]
    fn wrong_context_is_refused() {
        let cfg: Config = toml::from_str(
            "[[trace_statements]]\ncontext = \"log\"\nstatements = ['set(body, \"x\")']",
        )
        .unwrap();
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.key, "trace_statements[0].context");
        assert!(
            e.reason.starts_with("\"log\": trace_statements run in"),
            "{e}"
        );
    }
}
