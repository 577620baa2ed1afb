//! `filter`: drops spans, metrics, data points and log records that match any of the
//! configured OTTL conditions, as the OpenTelemetry Collector's filter processor does.
//!
//! ```toml
//! [processors.drop_noise]
//! type = "filter"
//! traces.span = ['name == "GET /health"', 'end_time_unix_nano - start_time_unix_nano < 1000000']
//! metrics.metric = ['name == "process.runtime.gc.count"']
//! logs.log_record = ['severity_number < SEVERITY_NUMBER_INFO', 'IsMatch(body, "^healthcheck")']
//! ```

use crate::ottl::{self, ContextKind, Expr};
use crate::{BuildError, Context, Request, RequestProcessor, Stage};
use serde::Deserialize;
use sluice_core::{InvalidConfig, Refusal, Signal};
use std::sync::Arc;

pub const TYPE_NAME: &str = "filter";

/// What to do when a condition cannot be evaluated. Accepted for compatibility with
/// OpenTelemetry Collector configs: Sluice's conditions never fail to evaluate (a missing or
/// mistyped value makes a comparison false), so every mode behaves the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    #[default]
    Propagate,
    Ignore,
    Silent,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConditions {
    /// Drops the spans for which any condition holds.
    #[serde(default)]
    pub span: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConditions {
    /// Drops whole metrics.
    #[serde(default)]
    pub metric: Vec<String>,
    /// Drops single data points (a metric left without points goes too).
    #[serde(default)]
    pub datapoint: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConditions {
    #[serde(default)]
    pub log_record: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub error_mode: ErrorMode,
    #[serde(default)]
    pub traces: TraceConditions,
    #[serde(default)]
    pub metrics: MetricConditions,
    #[serde(default)]
    pub logs: LogConditions,
}

impl sluice_core::ComponentConfig for Config {}

/// The conditions of one context, joined by `or`.
struct Conditions {
    ctx: ContextKind,
    any: Vec<Expr>,
}

fn compile(field: &str, ctx: ContextKind, sources: &[String]) -> Result<Conditions, InvalidConfig> {
    let any = sources
        .iter()
        .enumerate()
        .map(|(i, src)| {
            ottl::parse_condition(ctx, src)
                .map_err(|e| InvalidConfig::new(format!("{field}[{i}]"), format!("{src:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Conditions { ctx, any })
}

impl Config {
    fn compile(&self) -> Result<Vec<(Signal, Conditions)>, InvalidConfig> {
        let all = vec![
            (
                Signal::Traces,
                compile("traces.span", ContextKind::Span, &self.traces.span)?,
            ),
            (
                Signal::Metrics,
                compile("metrics.metric", ContextKind::Metric, &self.metrics.metric)?,
            ),
            (
                Signal::Metrics,
                compile(
                    "metrics.datapoint",
                    ContextKind::DataPoint,
                    &self.metrics.datapoint,
                )?,
            ),
            (
                Signal::Logs,
                compile("logs.log_record", ContextKind::Log, &self.logs.log_record)?,
            ),
        ];
        let all: Vec<_> = all.into_iter().filter(|(_, c)| !c.any.is_empty()).collect();
        if all.is_empty() {
            return Err(InvalidConfig::new(
                "",
                "give at least one condition in traces.span, metrics.metric, metrics.datapoint or logs.log_record",
            ));
        }
        Ok(all)
    }

    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.compile().map(|_| ())
    }
}

pub struct Filter {
    conditions: Vec<(Signal, Conditions)>,
    ctx: Context,
}

pub fn build(config: &Config, ctx: Context) -> Result<Stage, BuildError> {
    Ok(Stage::Request(Arc::new(Filter {
        conditions: config.compile()?,
        ctx,
    })))
}

impl RequestProcessor for Filter {
    fn applies_to(&self, signal: Signal) -> bool {
        self.conditions.iter().any(|(s, _)| *s == signal)
    }

    fn process(&self, request: &mut Request) -> Result<(), Refusal> {
        let signal = request.signal();
        for (_, c) in self.conditions.iter().filter(|(s, _)| *s == signal) {
            let dropped = ottl::retain(request, c.ctx, |t| {
                !c.any.iter().any(|cond| ottl::truthy(cond, t))
            });
            self.ctx.dropped(signal, "filtered", dropped);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data,
        number_data_point::Value,
    };
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

    fn filter(text: &str) -> Arc<dyn RequestProcessor> {
        let cfg: Config = toml::from_str(text).unwrap();
        match build(&cfg, Context::new("processors.f", "p")).unwrap() {
            Stage::Request(p) => p,
            Stage::Item(_) => panic!("filter works on decoded requests"),
        }
    }

    fn span(name: &str, code: i32, millis: u64) -> Span {
        Span {
            name: name.into(),
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + millis * 1_000_000,
            status: Some(Status {
                code,
                message: String::new(),
            }),
            ..Default::default()
        }
    }

    fn traces(spans: Vec<Span>) -> Request {
        Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn names(r: &Request) -> Vec<String> {
        let Request::Traces(t) = r else { panic!() };
        t.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.name.clone())
            .collect()
    }

    #[test]
    fn drops_spans_by_name_status_and_duration() {
        let f = filter(
            r#"
            traces.span = [
              'name == "GET /health"',
              'status.code != STATUS_CODE_ERROR and end_time_unix_nano - start_time_unix_nano < 10000000',
            ]
            "#,
        );
        let mut r = traces(vec![
            span("GET /health", 0, 50),
            span("fast-ok", 1, 2),
            span("fast-error", 2, 2),
            span("slow-ok", 1, 500),
        ]);
        f.process(&mut r).unwrap();
        assert_eq!(names(&r), vec!["fast-error", "slow-ok"]);
        assert!(!f.applies_to(Signal::Logs));
    }

    #[test]
    fn drops_metrics_and_points() {
        let f = filter(
            r#"
            metrics.metric = ['name == "noisy"']
            metrics.datapoint = ['attributes["env"] == "dev"', 'value_int > 100']
            "#,
        );
        let point = |env: &str, v: i64| NumberDataPoint {
            attributes: vec![opentelemetry_proto::tonic::common::v1::KeyValue {
                key: "env".into(),
                value: Some(crate::data::string_value(env)),
                ..Default::default()
            }],
            value: Some(Value::AsInt(v)),
            ..Default::default()
        };
        let gauge = |name: &str, points| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: points,
            })),
            ..Default::default()
        };
        let mut r = Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        gauge("noisy", vec![point("prod", 1)]),
                        gauge(
                            "kept",
                            vec![point("prod", 1), point("dev", 2), point("prod", 101)],
                        ),
                        gauge("all_dev", vec![point("dev", 3)]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        f.process(&mut r).unwrap();
        r.prune();
        assert_eq!(r.count(), 1);
        let Request::Metrics(m) = &r else { panic!() };
        let metrics = &m.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 1);
        assert_eq!(metrics[0].name, "kept");
    }

    #[test]
    fn drops_logs_by_severity_and_body() {
        let f = filter(
            r#"
            logs.log_record = ['severity_number < SEVERITY_NUMBER_WARN', 'IsMatch(body, "^healthcheck")']
            "#,
        );
        let log = |sev: i32, body: &str| LogRecord {
            severity_number: sev,
            body: Some(crate::data::string_value(body)),
            ..Default::default()
        };
        let mut r = Request::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        log(9, "info"),
                        log(17, "healthcheck failed"),
                        log(17, "disk full"),
                        log(13, "slow"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        f.process(&mut r).unwrap();
        assert_eq!(r.count(), 2);
    }

    #[test]
    fn config_errors_name_the_condition() {
        let bad = |text: &str| {
            toml::from_str::<Config>(text)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        let e = bad("traces.span = ['severity_number > 1']");
        assert_eq!(e.key, "traces.span[0]");
        assert!(
            e.reason
                .starts_with("\"severity_number > 1\": unknown path"),
            "{e}"
        );
        assert!(bad("").reason.contains("at least one condition"));
        assert_eq!(
            bad("logs.log_record = ['body ==']").key,
            "logs.log_record[0]"
        );
    }
}
