//! Direct HTTP clients of the query APIs: Prometheus/Mimir, Loki, Tempo.
//!
//! Every call has its own deadline; a [`BackendError`] becomes a line of the finding (a backend
//! that is down degrades the investigation, it never fails it). Time units follow each API: Prometheus
//! seconds, Loki nanoseconds, Tempo seconds in parameters.

use serde_json::Value;
use sluice_http_client::body::{BodyError, read_body};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest response body read from a backend.
const MAX_RESPONSE: usize = 4 << 20;

#[derive(Clone)]
pub struct Backends {
    pub http: reqwest::Client,
    pub prometheus: Option<String>,
    pub loki: Option<String>,
    pub tempo: Option<String>,
    pub tenant: Option<String>,
}

/// One Prometheus series with its (last) value.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl PromSample {
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}} {}", labels.join(","), self.value)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LokiLine {
    pub labels: BTreeMap<String, String>,
    pub ts_ns: String,
    pub line: String,
}

/// Why a query to a backend gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The backend's URL setting (e.g. `prometheus_url`) is not set.
    #[error("{0} not set")]
    NotConfigured(&'static str),
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error(transparent)]
    Body(#[from] BodyError),
    /// A non-2xx answer, with the start of its body.
    #[error("HTTP {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("prometheus error {error_type}: {error}")]
    Prometheus { error_type: String, error: String },
    #[error("unexpected resultType {0:?}")]
    ResultType(Option<String>),
    #[error("loki error: {0}")]
    Loki(Value),
}

fn prometheus_error(v: &Value) -> BackendError {
    BackendError::Prometheus {
        error_type: v["errorType"].as_str().unwrap_or("?").to_owned(),
        error: v["error"].as_str().unwrap_or("?").to_owned(),
    }
}

/// `path` under a backend's base URL; without one, the error names its `setting`.
fn endpoint(base: Option<&str>, setting: &'static str, path: &str) -> Result<String, BackendError> {
    let base = base.ok_or(BackendError::NotConfigured(setting))?;
    Ok(format!("{}{path}", base.trim_end_matches('/')))
}

impl Backends {
    async fn get_json(
        &self,
        url: String,
        params: &[(&str, String)],
        timeout: Duration,
    ) -> Result<Value, BackendError> {
        let mut req = self.http.get(&url).query(params).timeout(timeout);
        if let Some(t) = &self.tenant {
            req = req.header("X-Scope-OrgID", t);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_timeout() {
                BackendError::Timeout(timeout)
            } else {
                BackendError::Request(e)
            }
        })?;
        let status = resp.status();
        let body = read_body(resp, MAX_RESPONSE).await?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            return Err(BackendError::Status {
                status,
                body: text.chars().take(200).collect(),
            });
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// Instant query at `time_s` (Unix seconds).
    pub async fn prom_query(
        &self,
        promql: &str,
        time_s: f64,
        timeout: Duration,
    ) -> Result<Vec<PromSample>, BackendError> {
        let url = endpoint(
            self.prometheus.as_deref(),
            "prometheus_url",
            "/api/v1/query",
        )?;
        let v = self
            .get_json(
                url,
                &[
                    ("query", promql.to_owned()),
                    ("time", format!("{time_s:.3}")),
                    ("timeout", format!("{}ms", timeout.as_millis())),
                ],
                timeout,
            )
            .await?;
        parse_prom(&v)
    }

    /// Range query: for each series, the first and last timestamps (Unix s) with a value
    /// and the last value.
    pub async fn prom_query_range(
        &self,
        promql: &str,
        start_s: f64,
        end_s: f64,
        step_s: f64,
        timeout: Duration,
    ) -> Result<Vec<(PromSample, f64, f64)>, BackendError> {
        let url = endpoint(
            self.prometheus.as_deref(),
            "prometheus_url",
            "/api/v1/query_range",
        )?;
        let v = self
            .get_json(
                url,
                &[
                    ("query", promql.to_owned()),
                    ("start", format!("{start_s:.3}")),
                    ("end", format!("{end_s:.3}")),
                    ("step", format!("{step_s:.3}")),
                    ("timeout", format!("{}ms", timeout.as_millis())),
                ],
                timeout,
            )
            .await?;
        if v["status"] != "success" {
            return Err(prometheus_error(&v));
        }
        let mut out = Vec::new();
        for s in v["data"]["result"].as_array().into_iter().flatten() {
            let Some(values) = s["values"].as_array() else {
                continue;
            };
            let (Some(first), Some(last)) = (values.first(), values.last()) else {
                continue;
            };
            let (Some(t0), Some(t1), Some(value)) = (
                first.get(0).and_then(serde_json::Value::as_f64),
                last.get(0).and_then(serde_json::Value::as_f64),
                prom_value(last),
            ) else {
                continue;
            };
            out.push((
                PromSample {
                    labels: labels_of(&s["metric"]),
                    value,
                },
                t0,
                t1,
            ));
        }
        Ok(out)
    }

    /// LogQL `query_range` between `start_ns` and `end_ns`, newest first.
    pub async fn loki_query(
        &self,
        logql: &str,
        start_ns: i64,
        end_ns: i64,
        limit: u32,
        timeout: Duration,
    ) -> Result<Vec<LokiLine>, BackendError> {
        let url = endpoint(self.loki.as_deref(), "loki_url", "/loki/api/v1/query_range")?;
        let v = self
            .get_json(
                url,
                &[
                    ("query", logql.to_owned()),
                    ("start", start_ns.to_string()),
                    ("end", end_ns.to_string()),
                    ("limit", limit.to_string()),
                    ("direction", "backward".to_owned()),
                ],
                timeout,
            )
            .await?;
        parse_loki(&v)
    }

    /// `GET /api/traces/<id>`: (span count, error spans, slowest span "name (ms)"), or `None`
    /// when Tempo answers 404 (it does not hold the trace).
    pub async fn tempo_trace(
        &self,
        trace_id: &str,
        start_s: i64,
        end_s: i64,
        timeout: Duration,
    ) -> Result<Option<TraceSummary>, BackendError> {
        let url = endpoint(
            self.tempo.as_deref(),
            "tempo_url",
            &format!("/api/traces/{trace_id}"),
        )?;
        match self
            .get_json(
                url,
                &[("start", start_s.to_string()), ("end", end_s.to_string())],
                timeout,
            )
            .await
        {
            Ok(v) => Ok(Some(summarize_trace(&v))),
            // Tempo's answer for a trace it does not hold (yet): spans reach it only after
            // the pipeline's batching, later than the watcher sees them in the live window.
            Err(BackendError::Status { status, .. })
                if status == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /api/search?tags=…`: trace ids, newest first as Tempo returns them.
    pub async fn tempo_search(
        &self,
        tags: &str,
        start_s: i64,
        end_s: i64,
        limit: u32,
        timeout: Duration,
    ) -> Result<Vec<String>, BackendError> {
        let url = endpoint(self.tempo.as_deref(), "tempo_url", "/api/search")?;
        let v = self
            .get_json(
                url,
                &[
                    ("tags", tags.to_owned()),
                    ("start", start_s.to_string()),
                    ("end", end_s.to_string()),
                    ("limit", limit.to_string()),
                ],
                timeout,
            )
            .await?;
        Ok(v["traces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["traceID"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }
}

fn prom_value(v: &Value) -> Option<f64> {
    // [ <unix s>, "<value>" ]; values are strings ("NaN", "+Inf" parse too).
    v.get(1)?.as_str()?.parse().ok()
}

fn labels_of(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_prom(v: &Value) -> Result<Vec<PromSample>, BackendError> {
    if v["status"] != "success" {
        return Err(prometheus_error(v));
    }
    let data = &v["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => Ok(result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(PromSample {
                            labels: labels_of(&s["metric"]),
                            value: prom_value(&s["value"])?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()),
        Some("matrix") => Ok(result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(PromSample {
                            labels: labels_of(&s["metric"]),
                            value: prom_value(s["values"].as_array()?.last()?)?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()),
        Some("scalar") => Ok(prom_value(result)
            .map(|value| PromSample {
                labels: BTreeMap::new(),
                value,
            })
            .into_iter()
            .collect()),
        other => Err(BackendError::ResultType(other.map(str::to_owned))),
    }
}

pub fn parse_loki(v: &Value) -> Result<Vec<LokiLine>, BackendError> {
    if v["status"] != "success" {
        return Err(BackendError::Loki(v.clone()));
    }
    let mut out = Vec::new();
    if v["data"]["resultType"] != "streams" {
        return Ok(out);
    }
    for s in v["data"]["result"].as_array().into_iter().flatten() {
        let labels = labels_of(&s["stream"]);
        for e in s["values"].as_array().into_iter().flatten() {
            // ["<ns>", "<line>", {structured metadata}?]
            let (Some(ts), Some(line)) = (
                e.get(0).and_then(Value::as_str),
                e.get(1).and_then(Value::as_str),
            ) else {
                continue;
            };
            out.push(LokiLine {
                labels: labels.clone(),
                ts_ns: ts.to_owned(),
                line: line.to_owned(),
            });
        }
    }
    out.sort_by(|a, b| {
        let n = |s: &str| s.parse::<i128>().unwrap_or(0);
        n(&b.ts_ns).cmp(&n(&a.ts_ns))
    });
    Ok(out)
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSummary {
    pub spans: usize,
    pub error_spans: usize,
    pub slowest: Option<(String, f64)>,
    pub error_messages: Vec<String>,
    /// `execution_id` of a failed `awf.workflow` span in the trace.
    pub failed_execution: Option<String>,
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// Walks Tempo's v1 (`batches`) or OTLP (`resourceSpans`, also under `trace`) JSON.
pub fn summarize_trace(v: &Value) -> TraceSummary {
    let mut s = TraceSummary::default();
    let root = if v.get("trace").is_some() {
        &v["trace"]
    } else {
        v
    };
    let batches = root["batches"]
        .as_array()
        .or_else(|| root["resourceSpans"].as_array());
    for b in batches.into_iter().flatten() {
        let scopes = b["scopeSpans"]
            .as_array()
            .or_else(|| b["instrumentationLibrarySpans"].as_array());
        for sc in scopes.into_iter().flatten() {
            for span in sc["spans"].as_array().into_iter().flatten() {
                s.spans += 1;
                let code = &span["status"]["code"];
                let is_err = code.as_u64() == Some(2) || code.as_str() == Some("STATUS_CODE_ERROR");
                if is_err && span["name"] == "awf.workflow" && s.failed_execution.is_none() {
                    s.failed_execution = span["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|kv| kv["key"] == "execution_id")
                        .and_then(|kv| kv["value"]["stringValue"].as_str())
                        .map(str::to_owned);
                }
                if is_err {
                    s.error_spans += 1;
                    if let Some(m) = span["status"]["message"].as_str()
                        && s.error_messages.len() < 5
                        && !s.error_messages.iter().any(|x| x == m)
                    {
                        s.error_messages.push(m.chars().take(200).collect());
                    }
                }
                if let (Some(st), Some(en)) = (
                    as_u64(&span["startTimeUnixNano"]),
                    as_u64(&span["endTimeUnixNano"]),
                ) {
                    let ms = en.saturating_sub(st) as f64 / 1e6;
                    let name = span["name"].as_str().unwrap_or("?").to_owned();
                    if s.slowest.as_ref().is_none_or(|(_, m)| ms > *m) {
                        s.slowest = Some((name, ms));
                    }
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prometheus_shapes() {
        let v = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"agent_id":"a"},"value":[1.5,"3"]},{"metric":{},"value":[1.5,"NaN"]}]}});
        let s = parse_prom(&v).unwrap();
        assert_eq!(s[0].value, 3.0);
        assert!(s[1].value.is_nan());
        let v = json!({"status":"success","data":{"resultType":"scalar","result":[1.5,"+Inf"]}});
        assert_eq!(parse_prom(&v).unwrap()[0].value, f64::INFINITY);
        let v = json!({"status":"error","errorType":"bad_data","error":"parse error"});
        assert!(parse_prom(&v).unwrap_err().to_string().contains("bad_data"));
        assert!(parse_prom(&json!({})).is_err());
    }

    #[test]
    fn loki_and_tempo_shapes() {
        let v = json!({"status":"success","data":{"resultType":"streams","result":[
            {"stream":{"service_name":"awf"},"values":[["1000","old"],["2000","new",{"structuredMetadata":{}}],[1]]}]}});
        let l = parse_loki(&v).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].line, "new");
        let t = json!({"batches":[{"scopeSpans":[{"spans":[
            {"name":"a","startTimeUnixNano":"1000000","endTimeUnixNano":"5000000","status":{"code":2,"message":"boom"}},
            {"name":"awf.workflow","attributes":[{"key":"workflow_id","value":{"stringValue":"wf"}},
                {"key":"execution_id","value":{"stringValue":"ex-9"}}],"status":{"code":"STATUS_CODE_ERROR"}},
            {"name":"b","startTimeUnixNano":"1000000","endTimeUnixNano":"2000000","status":{}}]}]}]});
        let s = summarize_trace(&t);
        assert_eq!((s.spans, s.error_spans), (3, 2));
        assert_eq!(s.failed_execution.as_deref(), Some("ex-9"));
        assert_eq!(s.slowest, Some(("a".into(), 4.0)));
        assert_eq!(s.error_messages, ["boom"]);
    }
}
