//! The optional mcp-grafana investigation source: an MCP client (the official Rust SDK, `rmcp`)
//! over streamable HTTP (protocol 2025-11-25).
//!
//! The SDK runs the protocol (`initialize`, `notifications/initialized`, `tools/call`, session
//! ids and protocol-version headers, one re-initialization when the server answers 404 for an
//! expired session). Its HTTP side is [`HttpTransport`]: the workspace's reqwest client, with
//! SSE replies read by the shared parser (`sluice_http_client::sse`), so the SDK's own reqwest
//! (another major version) is not built. No `Origin` header is sent.

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue, StatusCode};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ClientJsonRpcMessage, Implementation,
    ProtocolVersion, ServerJsonRpcMessage,
};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpClientTransportConfig, StreamableHttpError,
    StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sluice_http_client::body::{BodyError, read_body};
use sluice_http_client::sse::{SseEvent, SseParser, is_event_stream};
use sse_stream::Sse;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

pub const PROTOCOL_VERSION: ProtocolVersion = ProtocolVersion::V_2025_11_25;

/// Why an MCP query gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("mcp {step}: timed out (no answer within {after:?})")]
    TimedOut { step: &'static str, after: Duration },
    #[error("mcp initialize: {0}")]
    Initialize(#[source] Box<rmcp::service::ClientInitializeError>),
    #[error("mcp tools/call: {0}")]
    Call(#[source] rmcp::ServiceError),
    /// The tool ran and reported an error (`isError`), with its text.
    #[error("{tool}: {text}")]
    Tool { tool: &'static str, text: String },
}

type Session = RunningService<RoleClient, ClientConfig>;

pub struct McpClient {
    transport: HttpTransport,
    url: Arc<str>,
    token: Option<String>,
    prometheus_uid: String,
    timeout: Duration,
    /// The running MCP session, opened on first use and again after it closed.
    session: tokio::sync::Mutex<Option<Session>>,
}

impl McpClient {
    /// A client whose every query ends within `timeout` (the watcher's `source_timeout`).
    pub fn new(
        url: &str,
        token: Option<String>,
        prometheus_uid: &str,
        timeout: Duration,
    ) -> Result<McpClient, reqwest::Error> {
        Ok(McpClient {
            transport: HttpTransport {
                http: reqwest::Client::builder().build()?,
                // Only a backstop for requests the SDK still has in flight after a query gave
                // up; the query's own deadline is `timeout`.
                request_timeout: timeout.saturating_mul(2),
            },
            url: Arc::from(url),
            token,
            prometheus_uid: prometheus_uid.to_owned(),
            timeout,
            session: tokio::sync::Mutex::new(None),
        })
    }

    async fn open_session(&self) -> Result<Session, McpError> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url.clone());
        if let Some(token) = &self.token {
            config = config.auth_header(token.clone());
        }
        let transport = StreamableHttpClientTransport::with_client(self.transport.clone(), config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("sluice-watcher", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(PROTOCOL_VERSION);
        match tokio::time::timeout(self.timeout, info.serve(transport)).await {
            Err(_) => Err(self.timed_out("initialize")),
            Ok(Err(e)) if caused_by_timeout(&e) => Err(self.timed_out("initialize")),
            Ok(Err(e)) => Err(McpError::Initialize(Box::new(e))),
            Ok(Ok(session)) => Ok(session),
        }
    }

    fn timed_out(&self, step: &'static str) -> McpError {
        McpError::TimedOut {
            step,
            after: self.timeout,
        }
    }

    /// `query_prometheus` (instant, now); returns the tool's text content.
    pub async fn query_prometheus(&self, expr: &str) -> Result<String, McpError> {
        let arguments = serde_json::json!({
            "datasourceUid": self.prometheus_uid, "expr": expr,
            "queryType": "instant", "endTime": "now"});
        let params = CallToolRequestParams::new("query_prometheus")
            .with_arguments(arguments.as_object().cloned().unwrap_or_default());
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut session = self.session.lock().await;
        if session.as_ref().is_none_or(RunningService::is_closed) {
            *session = Some(self.open_session().await?);
        }
        let Some(peer) = session.as_ref().map(|s| s.peer().clone()) else {
            return Err(self.timed_out("initialize"));
        };
        // Dropping the call on timeout cancels the request (the SDK sends the cancellation).
        let result = match tokio::time::timeout_at(deadline, peer.call_tool(params)).await {
            Err(_) => return Err(self.timed_out("tools/call")),
            Ok(Err(e)) if caused_by_timeout(&e) => return Err(self.timed_out("tools/call")),
            Ok(Err(e)) => {
                if matches!(e, rmcp::ServiceError::TransportClosed) {
                    *session = None;
                }
                return Err(McpError::Call(e));
            }
            Ok(Ok(result)) => result,
        };
        let text = result
            .content
            .iter()
            .find_map(|c| c.as_text().map(|t| t.text.clone()))
            .unwrap_or_default();
        if result.is_error == Some(true) {
            return Err(McpError::Tool {
                tool: "query_prometheus",
                text,
            });
        }
        Ok(text)
    }
}

/// True when a reqwest timeout is somewhere in `e`'s source chain.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// The SDK's streamable-HTTP client side over the workspace's reqwest client.
#[derive(Clone)]
struct HttpTransport {
    http: reqwest::Client,
    /// Bound on each POST and DELETE (not on the long-lived GET event stream).
    request_timeout: Duration,
}

const ACCEPT_BOTH: &str = "application/json, text/event-stream";
const SESSION_ID: &str = "mcp-session-id";

type HttpResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

impl HttpTransport {
    fn request(
        &self,
        builder: reqwest::RequestBuilder,
        session_id: Option<&str>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> reqwest::RequestBuilder {
        let mut builder = builder.headers(custom_headers.into_iter().collect());
        if let Some(token) = auth_token {
            builder = builder.bearer_auth(token);
        }
        if let Some(id) = session_id {
            builder = builder.header(SESSION_ID, id);
        }
        builder
    }
}

/// A non-success status with the start of the body, for the error message.
async fn unexpected_status<T>(response: reqwest::Response) -> HttpResult<T> {
    let status = response.status();
    let body = read_body(response, 512).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    Err(StreamableHttpError::UnexpectedServerResponse(
        format!("HTTP {status}: {}", text.trim()).into(),
    ))
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

impl StreamableHttpClient for HttpTransport {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<StreamableHttpPostResponse> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_token,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<StreamableHttpPostResponse> {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_token,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> HttpResult<StreamableHttpPostResponse> {
        let builder = self
            .http
            .post(uri.as_ref())
            .timeout(self.request_timeout)
            .header(http::header::ACCEPT, ACCEPT_BOTH)
            .json(&message);
        let response = self
            .request(builder, session_id.as_deref(), auth_token, custom_headers)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        if !status.is_success() {
            return unexpected_status(response).await;
        }
        let new_session = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = content_type(&response);
        if content_type.as_deref().is_some_and(is_event_stream) {
            let events = sse_events(response.bytes_stream(), limits.max_sse_event_size);
            return Ok(StreamableHttpPostResponse::Sse(events, new_session));
        }
        let body = read_body(response, limits.max_json_response_size)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => {
                    StreamableHttpError::ResponseBodyTooLarge { max_size: limit }
                }
                BodyError::Read(e) => StreamableHttpError::Io(std::io::Error::other(e)),
            })?;
        // Some servers answer a notification with an empty 200 instead of 202.
        if body.is_empty() && !matches!(message, ClientJsonRpcMessage::Request(_)) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if !content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
        {
            return Err(StreamableHttpError::UnexpectedContentType(content_type));
        }
        let reply: ServerJsonRpcMessage = serde_json::from_slice(&body)?;
        Ok(StreamableHttpPostResponse::Json(reply, new_session))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<()> {
        let builder = self.http.delete(uri.as_ref()).timeout(self.request_timeout);
        let response = self
            .request(builder, Some(&session_id), auth_token, custom_headers)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        match response.status() {
            StatusCode::METHOD_NOT_ALLOWED => Ok(()),
            s if s.is_success() => Ok(()),
            _ => unexpected_status(response).await,
        }
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<BoxStream<'static, Result<Sse, SseError>>> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_token,
            custom_headers,
            sluice_http_client::sse::DEFAULT_MAX_EVENT_BYTES,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<BoxStream<'static, Result<Sse, SseError>>> {
        let mut builder = self
            .http
            .get(uri.as_ref())
            .header(http::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        let response = self
            .request(builder, session_id.as_deref(), auth_token, custom_headers)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !response.status().is_success() {
            return unexpected_status(response).await;
        }
        let content_type = content_type(&response);
        if !content_type.as_deref().is_some_and(is_event_stream) {
            return Err(StreamableHttpError::UnexpectedContentType(content_type));
        }
        Ok(sse_events(response.bytes_stream(), max_sse_event_size))
    }
}

/// An SSE body as the SDK's events, parsed by the shared parser. An event larger than
/// `max_event_bytes` ends the stream with an error instead of being skipped silently.
fn sse_events(
    body: impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send + 'static,
    max_event_bytes: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    struct State {
        body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
        parser: SseParser,
        ready: VecDeque<SseEvent>,
        /// Returned once the events before it are out; then the stream ends.
        failure: Option<SseError>,
        done: bool,
    }
    let state = State {
        body: body.boxed(),
        parser: SseParser::with_limits(max_event_bytes, max_event_bytes),
        ready: VecDeque::new(),
        failure: None,
        done: false,
    };
    futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(event) = st.ready.pop_front() {
                let sse = Sse {
                    event: Some(event.event_type),
                    data: Some(event.data),
                    id: (!event.last_event_id.is_empty()).then_some(event.last_event_id),
                    retry: st.parser.retry_ms(),
                };
                return Some((Ok(sse), st));
            }
            if let Some(e) = st.failure.take() {
                return Some((Err(e), st));
            }
            if st.done {
                return None;
            }
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    st.parser.feed(&chunk, &mut out);
                    st.ready.extend(out);
                    if st.parser.oversized() > 0 {
                        st.done = true;
                        st.failure = Some(SseError::Body(Box::new(EventTooLarge {
                            limit: max_event_bytes,
                        })));
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    st.failure = Some(SseError::Body(Box::new(e)));
                }
                None => return None,
            }
        }
    })
    .boxed()
}

/// An SSE event over `max_event_bytes`; it ends the stream.
#[derive(Debug, thiserror::Error)]
#[error("an event is larger than {limit} bytes")]
struct EventTooLarge {
    limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(chunks: Vec<&'static [u8]>, max: usize) -> Vec<Result<Sse, SseError>> {
        let body = futures::stream::iter(chunks.into_iter().map(|c| Ok(bytes::Bytes::from(c))));
        sse_events(body, max).collect().await
    }

    #[tokio::test]
    async fn sse_events_follow_the_shared_parser_across_chunks() {
        let got = collect(
            vec![
                b"event: message\r\nid: 7\r\ndata: {\"a\"",
                b":1}\r\n\r\n: keep-alive\n",
                b"data: x\ndata: y\n\ndata: unterminated",
            ],
            1024,
        )
        .await;
        let sse = |event: &str, data: &str| Sse {
            event: Some(event.into()),
            data: Some(data.into()),
            id: Some("7".into()),
            retry: None,
        };
        let got: Vec<Sse> = got.into_iter().collect::<Result<_, _>>().expect("no error");
        assert_eq!(
            got,
            vec![sse("message", "{\"a\":1}"), sse("message", "x\ny")]
        );
    }

    #[tokio::test]
    async fn an_oversized_sse_event_ends_the_stream_with_an_error() {
        let got = collect(vec![b"data: small\n\n", b"data: far too long\n\n"], 12).await;
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].is_ok());
        assert!(
            matches!(&got[1], Err(SseError::Body(e))
                if e.downcast_ref::<EventTooLarge>().is_some_and(|e| e.limit == 12)),
            "{got:?}"
        );
    }
}
