//! Webhook and approver authentication.
//!
//! Intake accepts a request when at least one configured scheme is presented and valid, and no
//! presented scheme is invalid. HMAC is verified over the raw body bytes in constant time;
//! with a timestamp header the signed message is `timestamp + ":" + body`, timestamps outside
//! the replay window are refused, and a signature seen before within the window is a replay.

use crate::config::{Approver, Config};
use base64::Engine;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::Duration;

type HmacSha256 = Hmac<Sha256>;

/// Signatures remembered for replay detection, at most.
const MAX_SEEN: usize = 100_000;

/// Why a request was refused (the `reason` label of the refusal counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    BadBearer,
    BadBasic,
    BadSignature,
    BadTimestamp,
    StaleTimestamp,
    Replayed,
}

impl AuthError {
    pub fn reason(self) -> &'static str {
        match self {
            AuthError::Missing => "auth_missing",
            AuthError::BadBearer => "auth_bad_bearer",
            AuthError::BadBasic => "auth_bad_basic",
            AuthError::BadSignature => "auth_bad_signature",
            AuthError::BadTimestamp => "auth_bad_timestamp",
            AuthError::StaleTimestamp => "auth_stale_timestamp",
            AuthError::Replayed => "auth_replayed",
        }
    }
}

struct HmacAuth {
    secret: Vec<u8>,
    header: http::HeaderName,
    timestamp_header: Option<http::HeaderName>,
    window: Duration,
    /// signature digest → Unix seconds after which it may be forgotten.
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

pub struct IntakeAuth {
    bearer: Option<Vec<u8>>,
    basic: Option<Vec<u8>>,
    hmac: Option<HmacAuth>,
}

/// Constant-time equality of two secrets (comparing digests hides their lengths too).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

impl IntakeAuth {
    pub fn new(c: &Config) -> anyhow::Result<IntakeAuth> {
        let hmac = match &c.hmac_secret {
            Some(secret) => Some(HmacAuth {
                secret: secret.as_bytes().to_vec(),
                header: http::HeaderName::from_bytes(c.hmac_header.as_bytes())?,
                timestamp_header: c
                    .hmac_timestamp_header
                    .as_deref()
                    .map(|h| http::HeaderName::from_bytes(h.as_bytes()))
                    .transpose()?,
                window: c.replay_window.get(),
                seen: Mutex::new(HashMap::new()),
            }),
            None => None,
        };
        Ok(IntakeAuth {
            bearer: c.bearer_token.as_ref().map(|t| t.as_bytes().to_vec()),
            basic: c
                .basic_auth
                .as_ref()
                .map(|b| format!("{}:{}", b.username, b.password).into_bytes()),
            hmac,
        })
    }

    /// Checks one request; `Ok` names the scheme that authenticated it.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_unix_s: i64,
    ) -> Result<&'static str, AuthError> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut passed: Option<&'static str> = None;
        if let Some(expected) = &self.bearer
            && let Some(token) = strip_scheme(authorization, "bearer")
        {
            if !ct_eq(token.as_bytes(), expected) {
                return Err(AuthError::BadBearer);
            }
            passed = Some("bearer");
        }
        if let Some(expected) = &self.basic
            && let Some(encoded) = strip_scheme(authorization, "basic")
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| AuthError::BadBasic)?;
            if !ct_eq(&decoded, expected) {
                return Err(AuthError::BadBasic);
            }
            passed = Some("basic");
        }
        if let Some(h) = &self.hmac
            && let Some(sig) = headers.get(&h.header)
        {
            h.verify(headers, sig.as_bytes(), body, now_unix_s)?;
            passed = Some("hmac");
        }
        passed.ok_or(AuthError::Missing)
    }
}

fn strip_scheme<'a>(authorization: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = authorization.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest.trim())
}

impl HmacAuth {
    fn verify(
        &self,
        headers: &HeaderMap,
        signature: &[u8],
        body: &[u8],
        now_unix_s: i64,
    ) -> Result<(), AuthError> {
        let sig_text = std::str::from_utf8(signature).map_err(|_| AuthError::BadSignature)?;
        // Accept an optional `sha256=` prefix (GitHub-style senders).
        let sig_hex = sig_text.trim().trim_start_matches("sha256=");
        let provided = hex::decode(sig_hex).map_err(|_| AuthError::BadSignature)?;
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).map_err(|_| AuthError::BadSignature)?;
        let mut timestamp = None;
        if let Some(th) = &self.timestamp_header {
            let ts_text = headers
                .get(th)
                .and_then(|v| v.to_str().ok())
                .ok_or(AuthError::BadTimestamp)?
                .trim();
            let ts: i64 = ts_text.parse().map_err(|_| AuthError::BadTimestamp)?;
            mac.update(ts_text.as_bytes());
            mac.update(b":");
            timestamp = Some(ts);
        }
        mac.update(body);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&provided)
            .map_err(|_| AuthError::BadSignature)?;
        if let Some(ts) = timestamp {
            let window = i64::try_from(self.window.as_secs()).unwrap_or(i64::MAX);
            if (now_unix_s - ts).abs() > window {
                return Err(AuthError::StaleTimestamp);
            }
            let digest: [u8; 32] = Sha256::digest(&provided).into();
            let mut seen = self.seen.lock();
            if seen.len() >= MAX_SEEN {
                seen.retain(|_, until| *until > now_unix_s);
            }
            if seen.get(&digest).is_some_and(|until| *until > now_unix_s) {
                return Err(AuthError::Replayed);
            }
            if seen.len() < MAX_SEEN {
                seen.insert(digest, ts.saturating_add(window).max(now_unix_s));
            }
        }
        Ok(())
    }
}

/// Lowercase hex HMAC-SHA256 as Grafana sends it (also used by tests and docs).
pub fn sign(secret: &[u8], timestamp: Option<&str>, body: &[u8]) -> String {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return String::new();
    };
    if let Some(ts) = timestamp {
        mac.update(ts.as_bytes());
        mac.update(b":");
    }
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Approver identity from `Authorization: Bearer <token>`.
pub struct ApproverAuth {
    approvers: Vec<(String, Vec<u8>)>,
}

impl ApproverAuth {
    pub fn new(approvers: &[Approver]) -> ApproverAuth {
        ApproverAuth {
            approvers: approvers
                .iter()
                .map(|a| (a.name.clone(), a.token.as_bytes().to_vec()))
                .collect(),
        }
    }

    /// The approver's name, or `None` (401).
    pub fn identify(&self, headers: &HeaderMap) -> Option<String> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?;
        let token = strip_scheme(authorization, "bearer")?;
        // Compare with every approver so timing does not tell which one matched.
        let mut found = None;
        for (name, expected) in &self.approvers {
            if ct_eq(token.as_bytes(), expected) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            bearer_token: Some("tok".into()),
            basic_auth: Some(crate::config::BasicAuth {
                username: "u".into(),
                password: "p".into(),
            }),
            hmac_secret: Some("s3cret".into()),
            hmac_timestamp_header: Some("X-Ts".into()),
            ..Config::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn schemes() {
        let a = IntakeAuth::new(&cfg()).unwrap();
        let body = b"{}";
        assert_eq!(a.check(&headers(&[]), body, 100), Err(AuthError::Missing));
        assert_eq!(
            a.check(&headers(&[("authorization", "Bearer tok")]), body, 100),
            Ok("bearer")
        );
        assert_eq!(
            a.check(&headers(&[("authorization", "Bearer nope")]), body, 100),
            Err(AuthError::BadBearer)
        );
        assert_eq!(
            a.check(&headers(&[("authorization", "Basic dTpw")]), body, 100),
            Ok("basic")
        );
        assert_eq!(
            a.check(&headers(&[("authorization", "Basic dTpx")]), body, 100),
            Err(AuthError::BadBasic)
        );
        let sig = sign(b"s3cret", Some("100"), body);
        let h = headers(&[("x-grafana-alerting-signature", &sig), ("x-ts", "100")]);
        assert_eq!(a.check(&h, body, 100), Ok("hmac"));
        assert_eq!(a.check(&h, body, 101), Err(AuthError::Replayed));
        assert_eq!(a.check(&h, b"{ }", 100), Err(AuthError::BadSignature));
        let sig = sign(b"s3cret", Some("100"), body);
        let h = headers(&[("x-grafana-alerting-signature", &sig), ("x-ts", "100")]);
        assert_eq!(a.check(&h, body, 100 + 301), Err(AuthError::StaleTimestamp));
        let h = headers(&[("x-grafana-alerting-signature", &sig)]);
        assert_eq!(a.check(&h, body, 100), Err(AuthError::BadTimestamp));
        // A valid bearer does not excuse a wrong signature.
        let h = headers(&[
            ("authorization", "Bearer tok"),
            ("x-grafana-alerting-signature", "00"),
            ("x-ts", "100"),
        ]);
        assert_eq!(a.check(&h, body, 100), Err(AuthError::BadSignature));
    }

    #[test]
    fn approvers() {
        let a = ApproverAuth::new(&[
            Approver {
                name: "alice".into(),
                token: "alice-token".into(),
            },
            Approver {
                name: "bob".into(),
                token: "bob-token-1".into(),
            },
        ]);
        assert_eq!(
            a.identify(&headers(&[("authorization", "Bearer bob-token-1")])),
            Some("bob".into())
        );
        assert_eq!(a.identify(&headers(&[("authorization", "Bearer x")])), None);
        assert_eq!(a.identify(&headers(&[])), None);
    }
}
