//! Outbound HTTP client settings shared by the exporters and receivers that call an HTTP
//! backend: `basic_auth` / `bearer_token` and `tls = { ... }`, and the `reqwest::Client` built
//! from them. Keeping one copy means every component reads the same TOML keys the same way.

pub mod body;
pub mod sse;

use anyhow::anyhow;
use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;
use sluice_core::InvalidConfig;
use std::path::PathBuf;
use std::time::Duration;

/// Everything but RFC 3986 §2.3 unreserved characters: what must be percent-encoded for a
/// value to stay inside one URL path segment or query value.
pub const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `basic_auth = { username = "u", password = "p" }`: sent as `Authorization: Basic ...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

/// Client TLS. Servers are verified against the built-in webpki roots, or, when `ca_file` is
/// set, against its certificates only (as the OpenTelemetry Collector's `configtls` does);
/// [`trusts_web_roots`] is that rule for every client, HTTP and gRPC.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA certificates to trust instead of the webpki roots. Default: none.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (with `key_file`) for mutual TLS. Default: none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Default: none.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. For tests only. Default `false`.
    pub insecure_skip_verify: bool,
}

impl TlsConfig {
    /// Semantic checks; the error's key is under `tls`.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(InvalidConfig::new(
                if self.cert_file.is_some() {
                    "tls.key_file"
                } else {
                    "tls.cert_file"
                },
                "tls.cert_file and tls.key_file must be set together",
            ));
        }
        Ok(())
    }
}

/// Whether a client with this `tls.ca_file` trusts the built-in webpki roots: only without one.
/// A private CA file replaces the public roots, so a client pinned to it cannot be redirected
/// to a publicly trusted impostor.
pub fn trusts_web_roots(ca_file: Option<&std::path::Path>) -> bool {
    ca_file.is_none()
}

/// Checks `basic_auth` and `bearer_token` of one component: at most one, and a bearer token
/// that fits in a header.
pub fn validate_auth(basic: Option<&BasicAuth>, bearer: Option<&str>) -> Result<(), InvalidConfig> {
    if basic.is_some() && bearer.is_some() {
        return Err(InvalidConfig::new(
            "bearer_token",
            "basic_auth and bearer_token are mutually exclusive; set at most one",
        ));
    }
    if let Some(token) = bearer
        && (token.is_empty() || HeaderValue::from_str(token).is_err())
    {
        return Err(InvalidConfig::new(
            "bearer_token",
            "must be a non-empty, printable header value",
        ));
    }
    Ok(())
}

/// Timeouts and identity of a client built by [`build_client`].
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Deadline of a whole request; `None` for long-lived responses (SSE streams).
    pub timeout: Option<Duration>,
    pub connect_timeout: Duration,
    /// `User-Agent` set by the client; `None` leaves it to the caller's headers.
    pub user_agent: Option<&'static str>,
}

impl ClientOptions {
    /// A request deadline of `timeout`, connecting within at most 10 s of it.
    pub fn with_timeout(timeout: Duration) -> ClientOptions {
        ClientOptions {
            timeout: Some(timeout),
            connect_timeout: timeout.min(Duration::from_secs(10)),
            user_agent: None,
        }
    }
}

/// A rustls client trusting the webpki roots or, if set, `tls.ca_file` instead, presenting `tls.cert_file` /
/// `tls.key_file` when set. Errors name the key and the file.
pub fn build_client(tls: &TlsConfig, options: &ClientOptions) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(options.connect_timeout)
        .danger_accept_invalid_certs(tls.insecure_skip_verify);
    if let Some(timeout) = options.timeout {
        builder = builder.timeout(timeout);
    }
    if let Some(agent) = options.user_agent {
        builder = builder.user_agent(agent);
    }
    builder = builder.tls_built_in_root_certs(trusts_web_roots(tls.ca_file.as_deref()));
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow!("tls.ca_file: cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            anyhow!(
                "tls.ca_file: {} is not a PEM certificate bundle: {e}",
                path.display()
            )
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = std::fs::read(cert)
            .map_err(|e| anyhow!("tls.cert_file: cannot read {}: {e}", cert.display()))?;
        pem.push(b'\n');
        pem.extend(
            std::fs::read(key)
                .map_err(|e| anyhow!("tls.key_file: cannot read {}: {e}", key.display()))?,
        );
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            anyhow!("tls.cert_file / tls.key_file: not a valid PEM certificate and key: {e}")
        })?;
        builder = builder.identity(identity);
    }
    builder
        .build()
        .map_err(|e| anyhow!("building the HTTP client: {e}"))
}

/// The `Authorization` value for `basic_auth` (which wins) or `bearer_token`, marked
/// sensitive so it never shows in debug output. `None` when neither is set.
pub fn authorization(
    basic: Option<&BasicAuth>,
    bearer: Option<&str>,
) -> anyhow::Result<Option<HeaderValue>> {
    let value = match (basic, bearer) {
        (Some(b), _) => format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", b.username, b.password))
        ),
        (None, Some(token)) => format!("Bearer {token}"),
        (None, None) => return Ok(None),
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| anyhow!("basic_auth / bearer_token: not a valid header value"))?;
    value.set_sensitive(true);
    Ok(Some(value))
}

/// Adds the [`authorization`] header to `headers` (the static headers sent with every request).
pub fn insert_authorization(
    headers: &mut HeaderMap,
    basic: Option<&BasicAuth>,
    bearer: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(value) = authorization(basic, bearer)? {
        headers.insert(AUTHORIZATION, value);
    }
    Ok(())
}

/// Adds the [`authorization`] header to one request.
pub fn apply_auth(
    request: reqwest::RequestBuilder,
    basic: Option<&BasicAuth>,
    bearer: Option<&str>,
) -> anyhow::Result<reqwest::RequestBuilder> {
    Ok(match authorization(basic, bearer)? {
        Some(value) => request.header(AUTHORIZATION, value),
        None => request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        #[serde(default)]
        tls: TlsConfig,
        basic_auth: Option<BasicAuth>,
    }

    fn parse(s: &str) -> Result<Holder, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn tls_keys_parse_with_defaults_and_refuse_unknown_ones() {
        let h = parse("").unwrap();
        assert_eq!(h.tls, TlsConfig::default());
        assert!(!h.tls.insecure_skip_verify);
        let h = parse(
            "tls = { ca_file = \"ca.pem\", cert_file = \"c.pem\", key_file = \"k.pem\", insecure_skip_verify = true }",
        )
        .unwrap();
        assert_eq!(h.tls.ca_file, Some(PathBuf::from("ca.pem")));
        assert_eq!(h.tls.key_file, Some(PathBuf::from("k.pem")));
        assert!(h.tls.insecure_skip_verify);
        let err = parse("tls = { ca = \"x\" }").unwrap_err().to_string();
        assert!(err.contains("ca"), "{err}");
        let h = parse("basic_auth = { username = \"u\", password = \"p\" }").unwrap();
        assert_eq!(h.basic_auth.map(|b| b.password), Some("p".to_owned()));
        assert!(parse("basic_auth = { username = \"u\" }").is_err());
        assert!(parse("basic_auth = { username = \"u\", password = \"p\", x = 1 }").is_err());
    }

    #[test]
    fn validation_names_the_key() {
        let tls = TlsConfig {
            cert_file: Some("c.pem".into()),
            ..TlsConfig::default()
        };
        assert_eq!(tls.validate().unwrap_err().key, "tls.key_file");
        let basic = BasicAuth {
            username: "u".into(),
            password: "p".into(),
        };
        let err = validate_auth(Some(&basic), Some("t"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("basic_auth") && err.contains("bearer_token"),
            "{err}"
        );
        assert_eq!(
            validate_auth(None, Some("")).unwrap_err().key,
            "bearer_token"
        );
        assert_eq!(
            validate_auth(None, Some("a\nb")).unwrap_err().key,
            "bearer_token"
        );
        assert!(validate_auth(Some(&basic), None).is_ok());
    }

    #[test]
    fn authorization_values() {
        let basic = BasicAuth {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        // RFC 7617's example.
        let v = authorization(Some(&basic), None).unwrap().unwrap();
        assert_eq!(v.to_str().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(v.is_sensitive());
        let v = authorization(None, Some("tok")).unwrap().unwrap();
        assert_eq!(v.to_str().unwrap(), "Bearer tok");
        assert!(authorization(None, None).unwrap().is_none());
        assert!(authorization(None, Some("a\nb")).is_err());
        let mut headers = HeaderMap::new();
        insert_authorization(&mut headers, None, Some("tok")).unwrap();
        assert_eq!(headers[AUTHORIZATION], "Bearer tok");
        let req = apply_auth(
            reqwest::Client::new().get("http://127.0.0.1:1/"),
            Some(&basic),
            None,
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(
            req.headers()[AUTHORIZATION],
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn ca_file_replaces_the_web_roots() {
        assert!(trusts_web_roots(None));
        assert!(!trusts_web_roots(Some(std::path::Path::new("/etc/ca.pem"))));
    }

    #[test]
    fn client_errors_name_the_key() {
        let opts = ClientOptions::with_timeout(Duration::from_secs(5));
        assert_eq!(opts.connect_timeout, Duration::from_secs(5));
        assert!(build_client(&TlsConfig::default(), &opts).is_ok());
        let missing = TlsConfig {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsConfig::default()
        };
        let err = format!("{:#}", build_client(&missing, &opts).unwrap_err());
        assert!(err.contains("tls.ca_file"), "{err}");
        let dir = std::env::temp_dir().join(format!("sluice-http-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let bad_identity = TlsConfig {
            cert_file: Some(junk.clone()),
            key_file: Some(junk.clone()),
            ..TlsConfig::default()
        };
        let err = format!("{:#}", build_client(&bad_identity, &opts).unwrap_err());
        assert!(err.contains("tls.cert_file"), "{err}");
        let missing_key = TlsConfig {
            cert_file: Some(junk),
            key_file: Some(dir.join("absent.pem")),
            ..TlsConfig::default()
        };
        let err = format!("{:#}", build_client(&missing_key, &opts).unwrap_err());
        assert!(err.contains("tls.key_file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
