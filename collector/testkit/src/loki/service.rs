//! The HTTP side: routing, tenant checks and the answer to each push.

use super::decode::{
    DecodeError, IncomingStream, decode_json_push, decode_protobuf_push, decompress,
};
use super::ingest::store;
use super::otlp::{decode_otlp, otlp_to_streams};
use super::{LokiServerOptions, PushRecord, Shared};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Accepts connections; dropping this future (abort) drops every connection with it.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn reply(status: u16, body: &str, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_owned())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(ra) = retry_after.and_then(|v| http::HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert(RETRY_AFTER, ra);
    }
    resp
}

fn header(req: &Request<Incoming>, name: impl http::header::AsHeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[derive(Clone, Copy)]
enum Endpoint {
    Push,
    Otlp,
}

/// Why a push has no valid tenant.
#[derive(Debug, Error)]
enum TenantRefused {
    #[error("no org id")]
    Missing,
    #[error("multiple org IDs present")]
    Multiple,
    #[error("tenant ID '{0}' is invalid")]
    Invalid(String),
}

impl TenantRefused {
    fn status(&self) -> u16 {
        match self {
            TenantRefused::Missing => 401,
            TenantRefused::Multiple | TenantRefused::Invalid(_) => 400,
        }
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let endpoint = match path.as_str() {
        "/loki/api/v1/push" => Endpoint::Push,
        "/otlp/v1/logs" => Endpoint::Otlp,
        "/ready" => return reply(200, "ready", None),
        _ => return reply(404, "404 page not found", None),
    };
    if req.method() != Method::POST {
        return reply(405, "method not allowed", None);
    }
    let mut record = PushRecord {
        path,
        tenant: header(&req, "x-scope-orgid"),
        content_type: header(&req, CONTENT_TYPE),
        content_encoding: header(&req, CONTENT_ENCODING),
        authorization: header(&req, http::header::AUTHORIZATION),
        status: 0,
        response: String::new(),
        stored_entries: 0,
    };
    let options = shared.options.lock().clone();
    let body = match Limited::new(req.into_body(), options.max_body_size)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return finish(shared, record, 413, "request body too large", None),
    };

    let scripted = shared.state.lock().script.pop_front();
    if let Some(s) = scripted {
        return finish(shared, record, s.status, &s.body, s.retry_after.as_deref());
    }

    let tenant = match tenant_of(&options, record.tenant.as_deref()) {
        Ok(t) => t,
        Err(e) => return finish(shared, record, e.status(), &e.to_string(), None),
    };
    let streams = match decode_streams(shared, &options, endpoint, &record, &body) {
        Ok(s) => s,
        Err(e) => return finish(shared, record, 400, &e.to_string(), None),
    };

    let (stored, refused) = {
        let mut state = shared.state.lock();
        store(&mut state, &options, &tenant, streams)
    };
    record.stored_entries = stored;
    if refused.is_empty() {
        finish(shared, record, 204, "", None)
    } else {
        let text: Vec<String> = refused.iter().map(ToString::to_string).collect();
        finish(shared, record, 400, &text.join("\n"), None)
    }
}

/// The push's tenant: `X-Scope-OrgID` with auth enabled, else `fake`.
fn tenant_of(options: &LokiServerOptions, org_id: Option<&str>) -> Result<String, TenantRefused> {
    if !options.auth_enabled {
        return Ok("fake".to_owned());
    }
    match org_id.map(str::trim) {
        None | Some("") => Err(TenantRefused::Missing),
        Some(t) if t.contains('|') => Err(TenantRefused::Multiple),
        Some(t) if !valid_tenant(t) => Err(TenantRefused::Invalid(t.to_owned())),
        Some(t) => Ok(t.to_owned()),
    }
}

/// The streams of a push body, by endpoint and content type; OTLP requests are also kept.
fn decode_streams(
    shared: &Shared,
    options: &LokiServerOptions,
    endpoint: Endpoint,
    record: &PushRecord,
    body: &[u8],
) -> Result<Vec<IncomingStream>, DecodeError> {
    let body = decompress(
        record.content_encoding.as_deref(),
        body,
        options.max_body_size,
        matches!(endpoint, Endpoint::Otlp),
    )?;
    let media_type = record
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match endpoint {
        Endpoint::Push if media_type == "application/json" => decode_json_push(&body),
        Endpoint::Push => decode_protobuf_push(&body, options.max_body_size),
        Endpoint::Otlp => {
            let req = decode_otlp(&media_type, &body)?;
            let streams = otlp_to_streams(&req);
            shared.state.lock().otlp_requests.push(req);
            Ok(streams)
        }
    }
}

fn finish(
    shared: &Shared,
    mut record: PushRecord,
    status: u16,
    body: &str,
    retry_after: Option<&str>,
) -> Response<Full<Bytes>> {
    record.status = status;
    record.response = body.to_owned();
    shared.state.lock().pushes.push(record);
    shared.changed.notify_waiters();
    reply(status, body, retry_after)
}

/// Loki's `tenant.ValidTenantID`.
fn valid_tenant(t: &str) -> bool {
    t.len() <= 150
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!-_.*'()".contains(c))
}
