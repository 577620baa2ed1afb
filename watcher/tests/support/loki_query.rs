//! Loki's query API over what `sluice_testkit::loki::LokiTestServer` stored (it only
//! implements the push side): `GET /loki/api/v1/query_range` for the LogQL subset the watcher
//! sends — a stream selector with `=`, `!=`, `=~` matchers, then `| label="value"` filters on
//! stream labels or structured metadata and `|= "text"` line filters. Times in ns, newest
//! first (`direction=backward`), `limit` entries. Anything else is Loki's 400.

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
    Label(String, String),
    Contains(String),
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
fn parse(q: &str) -> Result<(Vec<Matcher>, Vec<Stage>), Box<dyn std::error::Error + Send + Sync>> {
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
            let name_end = a
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .ok_or("bad filter")?;
            let name = a[..name_end].to_owned();
            let a = a[name_end..]
                .trim_start()
                .strip_prefix('=')
                .ok_or("unsupported filter")?;
            let (v, after) = parse_quoted(a).ok_or("bad filter value")?;
            stages.push(Stage::Label(name, v));
            rest = after;
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
        let ok = matchers.iter().all(|m| match m {
            Matcher::Eq(n, v) => stream.labels.get(n).map(String::as_str).unwrap_or("") == v,
            Matcher::Ne(n, v) => stream.labels.get(n).map(String::as_str).unwrap_or("") != v,
            Matcher::Re(n, r) => r.is_match(stream.labels.get(n).map(String::as_str).unwrap_or("")),
        });
        if !ok {
            continue;
        }
        for e in &stream.entries {
            if e.timestamp_ns < start || e.timestamp_ns >= end {
                continue;
            }
            let pass = stages.iter().all(|s| match s {
                Stage::Contains(t) => e.line.contains(t.as_str()),
                Stage::Label(n, v) => {
                    stream
                        .labels
                        .get(n)
                        .map(String::as_str)
                        .or_else(|| e.metadata(n))
                        == Some(v.as_str())
                }
            });
            if pass {
                hits.push((e.timestamp_ns, stream.labels.clone(), e.line.clone()));
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
        assert!(matches!(&s[0], Stage::Label(n, v) if n == "agent_id" && v == "a\"b"));
        assert!(matches!(&s[1], Stage::Contains(t) if t == "fail"));
        assert!(parse(r#"{service_name=~".*"}"#).is_err());
        assert!(parse(r#"{a="b"} | json"#).is_err());
    }
}
