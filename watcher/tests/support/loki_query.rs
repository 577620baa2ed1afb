//! Loki's query API over what `sluice_testkit::loki::LokiTestServer` stored (it only
//! implements the push side): `GET /loki/api/v1/query_range` for the LogQL subset the watcher
//! and the scenario suite send — a stream selector with `=`, `!=`, `=~` matchers, then `| json`
//! (every key of a JSON line, nested keys joined with `_`; a line that is not JSON keeps going
//! with `__error__`), label filters `| name="value"` or `| (a="x" or b="y")` on stream labels,
//! structured metadata or extracted labels, and `|= "text"` line filters. As in Loki, a stream
//! without `service_name` gets one from the first of `discover_service_name`'s labels it has
//! (else `unknown_service`), and results carry structured metadata and extracted labels among
//! their stream labels. Times in ns, newest first (`direction=backward`), `limit` entries.
//! Anything else is Loki's 400.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use sluice_testkit::loki::LokiTestServer;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
enum Matcher {
    Eq(String, String),
    Ne(String, String),
    Re(String, regex::Regex),
}

#[derive(Debug)]
enum Stage {
    /// Passes when any of the (label, value) pairs matches.
    AnyOf(Vec<(String, String)>),
    Contains(String),
    Json,
}

/// Loki's default `discover_service_name` (limits_config), in its order.
const DISCOVER_SERVICE_NAME: [&str; 13] = [
    "service",
    "app",
    "application",
    "app_name",
    "name",
    "app_kubernetes_io_name",
    "container",
    "container_name",
    "k8s_container_name",
    "component",
    "workload",
    "job",
    "k8s_job_name",
];

fn with_service_name(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    if !labels.contains_key("service_name") {
        let service = DISCOVER_SERVICE_NAME
            .iter()
            .find_map(|l| labels.get(*l).filter(|v| !v.is_empty()).cloned())
            .unwrap_or_else(|| "unknown_service".to_owned());
        labels.insert("service_name".to_owned(), service);
    }
    labels
}

/// What Loki's `| json` extracts: every scalar of a JSON object, nested keys joined with `_`,
/// other characters than `[a-zA-Z0-9_]` replaced by `_`; arrays are skipped.
fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let k: String = k
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let key = if prefix.is_empty() {
                    k
                } else {
                    format!("{prefix}_{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        serde_json::Value::Array(_) | serde_json::Value::Null => {}
        serde_json::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

type ParseError = Box<dyn std::error::Error + Send + Sync>;

/// One `name="value"` at the start of `a`; the rest after it.
fn parse_equality(a: &str) -> Result<((String, String), &str), ParseError> {
    let a = a.trim_start();
    let name_end = a
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .ok_or("bad filter")?;
    let name = a[..name_end].to_owned();
    let a = a[name_end..]
        .trim_start()
        .strip_prefix('=')
        .ok_or("unsupported filter")?;
    let (v, after) = parse_quoted(a).ok_or("bad filter value")?;
    Ok(((name, v), after))
}

fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start();
    let rest = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &rest[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// The query's matchers and pipeline stages; what this server does not support, or Loki
/// would refuse, is an error (answered 400 with its text, as Loki answers).
fn parse(q: &str) -> Result<(Vec<Matcher>, Vec<Stage>), ParseError> {
    let q = q.trim();
    let inner_end = q.find('}').ok_or("missing }")?;
    let sel = q.strip_prefix('{').ok_or("missing {")?;
    let mut matchers = Vec::new();
    let mut rest = &sel[..inner_end - 1];
    while !rest.trim().is_empty() {
        let r = rest.trim_start().trim_start_matches(',').trim_start();
        let name_end = r
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .ok_or("bad matcher")?;
        let name = r[..name_end].to_owned();
        let after = &r[name_end..];
        let (op, after) = ["=~", "!=", "="]
            .iter()
            .find_map(|op| after.strip_prefix(op).map(|a| (*op, a)))
            .ok_or("bad operator")?;
        let (value, after) = parse_quoted(after).ok_or("bad value")?;
        matchers.push(match op {
            "=" => Matcher::Eq(name, value),
            "!=" => Matcher::Ne(name, value),
            _ => Matcher::Re(name, regex::Regex::new(&format!("^(?:{value})$"))?),
        });
        rest = after;
    }
    if !matchers.iter().any(|m| match m {
        Matcher::Eq(_, v) => !v.is_empty(),
        Matcher::Re(_, r) => !r.is_match(""),
        Matcher::Ne(..) => false,
    }) {
        return Err("queries require at least one matcher that is not empty-compatible".into());
    }
    let mut stages = Vec::new();
    let mut rest = &q[inner_end + 1..];
    while !rest.trim().is_empty() {
        let r = rest.trim_start();
        if let Some(a) = r.strip_prefix("|=") {
            let (v, after) = parse_quoted(a).ok_or("bad line filter")?;
            stages.push(Stage::Contains(v));
            rest = after;
        } else if let Some(a) = r.strip_prefix('|') {
            let a = a.trim_start();
            if let Some(after) = a.strip_prefix("json")
                && !after.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                if !(after.trim().is_empty() || after.trim_start().starts_with('|')) {
                    return Err("json with parameters is not supported".into());
                }
                stages.push(Stage::Json);
                rest = after;
            } else if let Some(mut a) = a.strip_prefix('(') {
                let mut any = Vec::new();
                loop {
                    let (eq, after) = parse_equality(a)?;
                    any.push(eq);
                    let after = after.trim_start();
                    if let Some(after) = after.strip_prefix(')') {
                        rest = after;
                        break;
                    }
                    a = after
                        .strip_prefix("or")
                        .filter(|a| a.starts_with(char::is_whitespace))
                        .ok_or("expected `or` or `)`")?;
                }
                stages.push(Stage::AnyOf(any));
            } else {
                let (eq, after) = parse_equality(a)?;
                stages.push(Stage::AnyOf(vec![eq]));
                rest = after;
            }
        } else {
            return Err(format!("unsupported LogQL near {r:?}").into());
        }
    }
    Ok((matchers, stages))
}

async fn query_range(
    State(loki): State<Arc<LokiTestServer>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let bad = |m: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "error": m})),
        )
            .into_response()
    };
    let Some(query) = q.get("query") else {
        return bad("missing query".into());
    };
    let (matchers, stages) = match parse(query) {
        Ok(p) => p,
        Err(e) => return bad(format!("parse error: {e}")),
    };
    let start: i64 = q.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let end: i64 = q
        .get("end")
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MAX);
    let limit: usize = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(100);
    let mut hits: Vec<(i64, BTreeMap<String, String>, String)> = Vec::new();
    for stream in loki.streams("fake") {
        let labels = with_service_name(stream.labels.clone());
        let ok = matchers.iter().all(|m| match m {
            Matcher::Eq(n, v) => labels.get(n).map(String::as_str).unwrap_or("") == v,
            Matcher::Ne(n, v) => labels.get(n).map(String::as_str).unwrap_or("") != v,
            Matcher::Re(n, r) => r.is_match(labels.get(n).map(String::as_str).unwrap_or("")),
        });
        if !ok {
            continue;
        }
        for e in &stream.entries {
            if e.timestamp_ns < start || e.timestamp_ns >= end {
                continue;
            }
            // The entry's labels as the pipeline sees them: stream labels, then structured
            // metadata, then what parsers extract (`_extracted` on a clash, as in Loki).
            let mut entry = labels.clone();
            for (n, v) in &e.structured_metadata {
                entry.entry(n.clone()).or_insert_with(|| v.clone());
            }
            let pass = stages.iter().all(|s| match s {
                Stage::Contains(t) => e.line.contains(t.as_str()),
                Stage::AnyOf(any) => any
                    .iter()
                    .any(|(n, v)| entry.get(n).map(String::as_str) == Some(v.as_str())),
                Stage::Json => {
                    match serde_json::from_str::<serde_json::Value>(&e.line) {
                        Ok(v @ serde_json::Value::Object(_)) => {
                            let mut parsed = BTreeMap::new();
                            flatten_json("", &v, &mut parsed);
                            for (n, v) in parsed {
                                let n = if entry.contains_key(&n) {
                                    format!("{n}_extracted")
                                } else {
                                    n
                                };
                                entry.insert(n, v);
                            }
                        }
                        _ => {
                            entry.insert("__error__".into(), "JSONParserErr".into());
                        }
                    }
                    true
                }
            });
            if pass {
                hits.push((e.timestamp_ns, entry, e.line.clone()));
            }
        }
    }
    hits.sort_by_key(|h| std::cmp::Reverse(h.0));
    hits.truncate(limit);
    let mut streams: BTreeMap<String, (BTreeMap<String, String>, Vec<serde_json::Value>)> =
        BTreeMap::new();
    for (ts, labels, line) in hits {
        let key = format!("{labels:?}");
        streams
            .entry(key)
            .or_insert_with(|| (labels, Vec::new()))
            .1
            .push(json!([ts.to_string(), line]));
    }
    let result: Vec<serde_json::Value> = streams
        .into_values()
        .map(|(labels, values)| json!({"stream": labels, "values": values}))
        .collect();
    axum::Json(
        json!({"status": "success", "data": {"resultType": "streams", "result": result,
        "stats": {}}}),
    )
    .into_response()
}

/// Serves the query API for `loki`; returns its base URL.
pub async fn serve_queries(loki: Arc<LokiTestServer>) -> String {
    let app = Router::new()
        .route("/loki/api/v1/query_range", axum::routing::get(query_range))
        .with_state(loki);
    let (addr, _h) = super::serve(app).await;
    format!("http://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logql_subset() {
        let (m, s) = parse(r#"{service_name="awf-1"} | agent_id="a\"b" |= "fail""#).unwrap();
        assert_eq!(m.len(), 1);
        assert!(matches!(&s[0], Stage::AnyOf(a) if a[..] == [("agent_id".into(), "a\"b".into())]));
        assert!(matches!(&s[1], Stage::Contains(t) if t == "fail"));
        let (_, s) =
            parse(r#"{a="b"} | json | (x="1" or attributes_x="1") | jsonish="2""#).unwrap();
        assert!(matches!(&s[0], Stage::Json));
        assert!(matches!(&s[1], Stage::AnyOf(a) if a.len() == 2 && a[1].0 == "attributes_x"));
        assert!(matches!(&s[2], Stage::AnyOf(a) if a[0].0 == "jsonish"));
        assert!(parse(r#"{service_name=~".*"}"#).is_err());
        assert!(parse(r#"{a="b"} | json x="y""#).is_err());
        assert!(parse(r#"{a="b"} | (x="1" and y="2")"#).is_err());
        assert!(parse(r#"{a="b"} | (x="1" order="2")"#).is_err());
        assert!(parse(r#"{a="b"} | logfmt"#).is_err());
    }

    #[test]
    fn json_flattens_like_loki() {
        let mut out = BTreeMap::new();
        let v = json!({"body": "b", "attributes": {"execution_id": "ex-1", "n": 3, "l": [1]},
                       "resources": {"service.name": "awf"}, "z": null});
        flatten_json("", &v, &mut out);
        let want: BTreeMap<String, String> = [
            ("attributes_execution_id", "ex-1"),
            ("attributes_n", "3"),
            ("body", "b"),
            ("resources_service_name", "awf"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(out, want);
        let labels = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            with_service_name(labels(&[("job", "awf"), ("container", "c")]))["service_name"],
            "c"
        );
        assert_eq!(
            with_service_name(labels(&[("x", "1")]))["service_name"],
            "unknown_service"
        );
        assert_eq!(
            with_service_name(labels(&[("service_name", "s"), ("job", "j")]))["service_name"],
            "s"
        );
    }
}
