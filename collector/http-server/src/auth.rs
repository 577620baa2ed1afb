//! Client authentication: `Authorization: Bearer` or `Basic`, compared in constant time.
//! Credentials under `tenants.<tenant>` are good only for requests naming that tenant.

use crate::config::{Credentials, ServerAuthConfig};
use base64::Engine;
use http::HeaderMap;
use std::collections::HashMap;
use subtle::ConstantTimeEq;

/// Why a request's credentials were refused (the `reason` label of the refusal counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No usable `Authorization` header.
    Missing,
    /// Credentials that match nothing configured.
    Invalid,
    /// Credentials of another tenant than the one the request names.
    WrongTenant,
}

impl AuthRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            AuthRefusal::Missing => "auth_missing",
            AuthRefusal::Invalid => "auth_invalid",
            AuthRefusal::WrongTenant => "auth_wrong_tenant",
        }
    }

    /// The message for the client; it never echoes what was presented.
    pub fn message(self) -> &'static str {
        match self {
            AuthRefusal::Missing => "missing credentials: send Authorization: Bearer or Basic",
            AuthRefusal::Invalid => "invalid credentials",
            AuthRefusal::WrongTenant => "these credentials are not valid for the requested tenant",
        }
    }
}

impl std::fmt::Display for AuthRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// Accepted secrets: a bearer token, or `username:password` of basic auth.
#[derive(Default)]
struct Secrets {
    bearer: Option<Vec<u8>>,
    basic: Option<Vec<u8>>,
}

impl Secrets {
    fn from(credentials: &Credentials) -> Secrets {
        Secrets {
            bearer: credentials
                .bearer_token
                .as_ref()
                .map(|t| t.as_bytes().to_vec()),
            basic: credentials
                .basic_auth
                .as_ref()
                .map(|b| format!("{}:{}", b.username, b.password).into_bytes()),
        }
    }

    fn accepts(&self, presented: &Presented) -> bool {
        let (expected, given) = match presented {
            Presented::Bearer(token) => (&self.bearer, token),
            Presented::Basic(pair) => (&self.basic, pair),
        };
        expected
            .as_deref()
            .is_some_and(|expected| bool::from(expected.ct_eq(given.as_slice())))
    }
}

enum Presented {
    Bearer(Vec<u8>),
    Basic(Vec<u8>),
}

fn presented(headers: &HeaderMap) -> Option<Presented> {
    let value = headers.get(http::header::AUTHORIZATION)?.as_bytes();
    let split = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(split);
    let credentials = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Some(Presented::Bearer(credentials.to_vec()))
    } else if scheme.eq_ignore_ascii_case(b"basic") {
        base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()
            .map(Presented::Basic)
    } else {
        None
    }
}

/// Checks requests against a receiver's `auth` table.
pub struct Authenticator {
    any_tenant: Secrets,
    tenants: HashMap<String, Secrets>,
}

impl Authenticator {
    pub fn new(config: &ServerAuthConfig) -> Authenticator {
        Authenticator {
            any_tenant: Secrets::from(&config.any_tenant()),
            tenants: config
                .tenants
                .iter()
                .map(|(tenant, credentials)| (tenant.clone(), Secrets::from(credentials)))
                .collect(),
        }
    }

    /// Accepts the request when its credentials are good for every tenant, or for `tenant`
    /// (the value of the receiver's tenant header, if any).
    pub fn check(&self, headers: &HeaderMap, tenant: Option<&str>) -> Result<(), AuthRefusal> {
        let Some(presented) = presented(headers) else {
            return Err(AuthRefusal::Missing);
        };
        if self.any_tenant.accepts(&presented) {
            return Ok(());
        }
        if let Some(secrets) = tenant.and_then(|t| self.tenants.get(t))
            && secrets.accepts(&presented)
        {
            return Ok(());
        }
        if self.tenants.values().any(|s| s.accepts(&presented)) {
            return Err(AuthRefusal::WrongTenant);
        }
        Err(AuthRefusal::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(toml_text: &str) -> Authenticator {
        let config: ServerAuthConfig = toml::from_str(toml_text).unwrap();
        config.validate().unwrap();
        Authenticator::new(&config)
    }

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(authorization).unwrap(),
        );
        headers
    }

    fn basic(user: &str, password: &str) -> String {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {pair}")
    }

    #[test]
    fn bearer_and_basic_for_every_tenant() {
        let a = auth(
            "bearer_token = \"s3cret\"\nbasic_auth = { username = \"u\", password = \"p\" }\n",
        );
        assert_eq!(a.check(&headers("Bearer s3cret"), None), Ok(()));
        assert_eq!(a.check(&headers("bearer s3cret"), Some("x")), Ok(()));
        assert_eq!(a.check(&headers(&basic("u", "p")), None), Ok(()));
        assert_eq!(
            a.check(&headers("Bearer wrong"), None),
            Err(AuthRefusal::Invalid)
        );
        assert_eq!(
            a.check(&headers(&basic("u", "wrong")), None),
            Err(AuthRefusal::Invalid)
        );
        assert_eq!(a.check(&HeaderMap::new(), None), Err(AuthRefusal::Missing));
        assert_eq!(
            a.check(&headers("Digest abc"), None),
            Err(AuthRefusal::Missing)
        );
        assert_eq!(
            a.check(&headers("Basic !!notbase64"), None),
            Err(AuthRefusal::Missing)
        );
    }

    #[test]
    fn tenant_credentials_only_for_their_tenant() {
        let a = auth(
            "[tenants.team-a]\nbearer_token = \"token-a\"\n[tenants.team-b]\nbasic_auth = { username = \"b\", password = \"pb\" }\n",
        );
        assert_eq!(a.check(&headers("Bearer token-a"), Some("team-a")), Ok(()));
        assert_eq!(a.check(&headers(&basic("b", "pb")), Some("team-b")), Ok(()));
        assert_eq!(
            a.check(&headers("Bearer token-a"), Some("team-b")),
            Err(AuthRefusal::WrongTenant)
        );
        assert_eq!(
            a.check(&headers("Bearer token-a"), None),
            Err(AuthRefusal::WrongTenant)
        );
        assert_eq!(
            a.check(&headers("Bearer token-c"), Some("team-c")),
            Err(AuthRefusal::Invalid)
        );
    }

    #[test]
    fn config_refusals_name_the_key() {
        let parse = |t: &str| {
            toml::from_str::<ServerAuthConfig>(t)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate().map_err(|e| e.under("auth").to_string()))
        };
        assert!(parse("").unwrap_err().starts_with("auth: "));
        assert!(
            parse("bearer_token = \"\"")
                .unwrap_err()
                .starts_with("auth.bearer_token")
        );
        assert!(
            parse("[tenants.a]\n")
                .unwrap_err()
                .starts_with("auth.tenants.a: ")
        );
        assert!(
            parse("basic_auth = { username = \"a:b\", password = \"p\" }")
                .unwrap_err()
                .starts_with("auth.basic_auth.username")
        );
        assert!(
            parse("token = \"x\"")
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config: ServerAuthConfig = toml::from_str(
            "bearer_token = \"tok-123\"\nbasic_auth = { username = \"u\", password = \"pw-456\" }\n[tenants.a]\nbearer_token = \"tok-789\"\n",
        )
        .unwrap();
        let shown = format!("{config:?}");
        for secret in ["tok-123", "pw-456", "tok-789"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
