//! Runs a rendered action: one HTTP request (no redirects followed) or one argv command (no
//! shell, empty environment but `PATH`, no stdin), each under the script's timeout.

use crate::remediation_catalogue::{ActionKind, RenderedAction};
use sluice_http_client::body::read_body;
use std::time::Duration;

/// Response or output kept, at most.
const MAX_OUTPUT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct ExecResult {
    /// `ok`, `failed` or `timeout`.
    pub outcome: &'static str,
    pub status: Option<u16>,
    pub exit_code: Option<i32>,
    /// Response body or stdout+stderr, truncated for the record.
    pub response: String,
    pub result: Option<serde_json::Value>,
}

pub struct Executor {
    http: reqwest::Client,
}

impl Executor {
    pub fn new() -> anyhow::Result<Executor> {
        Ok(Executor {
            http: reqwest::Client::builder()
                // A remediation endpoint must not be able to send us elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    pub async fn run(&self, a: &RenderedAction) -> ExecResult {
        let timeout = Duration::from_millis(a.timeout_ms.max(1));
        match &a.kind {
            ActionKind::Http {
                method,
                url,
                headers,
                body,
            } => {
                self.http_call(method, url, headers, body.as_ref(), timeout)
                    .await
            }
            ActionKind::Command { argv } => run_command(argv, timeout).await,
        }
    }

    async fn http_call(
        &self,
        method: &str,
        url: &str,
        headers: &std::collections::BTreeMap<String, String>,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> ExecResult {
        let failed = |msg: String| ExecResult {
            outcome: "failed",
            status: None,
            exit_code: None,
            response: msg,
            result: None,
        };
        let Ok(m) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return failed(format!("bad method {method:?}"));
        };
        let mut req = self.http.request(m, url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return ExecResult {
                    outcome: "timeout",
                    ..failed(format!("no answer within {timeout:?}"))
                };
            }
            Err(e) => return failed(format!("request failed: {e}")),
        };
        let status = resp.status();
        let text = match read_body(resp, MAX_OUTPUT).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => e.to_string(),
        };
        ExecResult {
            outcome: if status.is_success() { "ok" } else { "failed" },
            status: Some(status.as_u16()),
            exit_code: None,
            result: serde_json::from_str(&text).ok(),
            response: text.chars().take(2000).collect(),
        }
    }
}

async fn run_command(argv: &[String], timeout: Duration) -> ExecResult {
    let Some((program, args)) = argv.split_first() else {
        return ExecResult {
            outcome: "failed",
            status: None,
            exit_code: None,
            response: "empty command".into(),
            result: None,
        };
    };
    let child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            return ExecResult {
                outcome: "failed",
                status: None,
                exit_code: None,
                response: format!("cannot start {program}: {e}"),
                result: None,
            };
        }
    };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => ExecResult {
            // Dropping the future kills the child (kill_on_drop).
            outcome: "timeout",
            status: None,
            exit_code: None,
            response: format!("killed after {timeout:?}"),
            result: None,
        },
        Ok(Err(e)) => ExecResult {
            outcome: "failed",
            status: None,
            exit_code: None,
            response: format!("waiting for {program}: {e}"),
            result: None,
        },
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(MAX_OUTPUT)])
                .into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(MAX_OUTPUT)]);
            ExecResult {
                outcome: if out.status.success() { "ok" } else { "failed" },
                status: None,
                exit_code: out.status.code(),
                result: serde_json::from_str(&stdout).ok(),
                response: format!("{stdout}{stderr}").chars().take(2000).collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(argv: &[&str], timeout_ms: u64) -> RenderedAction {
        RenderedAction {
            script: "t".into(),
            params: Default::default(),
            kind: ActionKind::Command {
                argv: argv.iter().map(|s| s.to_string()).collect(),
            },
            timeout_ms,
        }
    }

    #[tokio::test]
    async fn commands_run_without_a_shell() {
        let e = Executor::new().unwrap();
        // The argument reaches the program verbatim: no shell expands `$(...)` or `;`.
        let r = e.run(&cmd(&["/bin/echo", "a; $(id) `x`"], 5000)).await;
        assert_eq!(r.outcome, "ok");
        assert_eq!(r.response.trim(), "a; $(id) `x`");
        let r = e.run(&cmd(&["/bin/sleep", "5"], 100)).await;
        assert_eq!(r.outcome, "timeout");
        let r = e.run(&cmd(&["/nonexistent/x"], 100)).await;
        assert_eq!(r.outcome, "failed");
        let r = e.run(&cmd(&["/bin/false"], 1000)).await;
        assert_eq!((r.outcome, r.exit_code), ("failed", Some(1)));
    }
}
