//! OTLP over gRPC without decoding: a tonic codec that hands message bytes through untouched
//! (receivers validate them with the walker; exporters, the load generator and test backends
//! send pre-encoded requests), a client layer that sends pre-encoded messages without copying
//! them, and the method paths of the three Export services.

use bytes::{Buf, BufMut, Bytes};
use http_body::Frame;
use sluice_core::Signal;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;

/// Passes already-encoded messages through, in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A request message already encoded as consecutive parts (concatenated encodings of one
/// message type are one message of that type), riding in the request's extensions until
/// [`PreEncodedBody`] turns it into the HTTP/2 body.
#[derive(Clone, Debug)]
struct PreEncoded(Vec<Bytes>);

/// A unary request whose message is `parts` back to back, for a client built on
/// [`PreEncodedBody`]. The parts go out as the DATA of the call without being copied: tonic's
/// codecs always copy a message into their encode buffer, which for multi-megabyte export
/// requests was the largest copy on Sluice's export path (see `benches/RESULTS.md`). tonic
/// still builds the call (path, `grpc-timeout`, metadata) and reads the response and status.
pub fn pre_encoded_request(metadata: MetadataMap, parts: Vec<Bytes>) -> tonic::Request<Bytes> {
    let len: usize = parts.iter().map(Bytes::len).sum();
    if u32::try_from(len).is_err() {
        // Beyond what the 5-byte gRPC message prefix can describe: let tonic refuse it.
        let mut joined = bytes::BytesMut::with_capacity(len);
        for p in &parts {
            joined.extend_from_slice(p);
        }
        return tonic::Request::from_parts(metadata, Default::default(), joined.freeze());
    }
    let mut extensions = tonic::Extensions::new();
    extensions.insert(PreEncoded(parts));
    tonic::Request::from_parts(metadata, extensions, Bytes::new())
}

/// A client service layer (wrap a `tonic::transport::Channel` in it and build
/// `tonic::client::Grpc` on top) that sends the message of a [`pre_encoded_request`] as its
/// parts; other requests pass through unchanged.
#[derive(Clone, Debug)]
pub struct PreEncodedBody<S>(pub S);

impl<S> tower::Service<http::Request<tonic::body::Body>> for PreEncodedBody<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(PreEncoded(parts)) = request.extensions_mut().remove::<PreEncoded>() {
            *request.body_mut() = framed_body(parts);
        }
        self.0.call(request)
    }
}

/// One gRPC length-prefixed message (gRPC over HTTP/2, "Length-Prefixed-Message":
/// uncompressed flag, 4-byte big-endian length) made of `parts`.
fn framed_body(parts: Vec<Bytes>) -> tonic::body::Body {
    let len: usize = parts.iter().map(Bytes::len).sum();
    let mut prefix = [0u8; 5];
    // `pre_encoded_request` only attaches parts whose length fits.
    prefix[1..].copy_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    let frames = std::iter::once(Bytes::copy_from_slice(&prefix))
        .chain(parts.into_iter().filter(|p| !p.is_empty()))
        .map(|data| Ok::<_, Infallible>(Frame::data(data)));
    tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames,
    )))
}

pub const TRACES_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
pub const LOGS_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The gRPC method path of a signal's Export call.
pub fn export_path(signal: Signal) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(match signal {
        Signal::Traces => TRACES_EXPORT,
        Signal::Metrics => METRICS_EXPORT,
        Signal::Logs => LOGS_EXPORT,
    })
}

/// The signal a gRPC Export path belongs to.
pub fn signal_of_path(path: &str) -> Option<Signal> {
    match path {
        TRACES_EXPORT => Some(Signal::Traces),
        METRICS_EXPORT => Some(Signal::Metrics),
        LOGS_EXPORT => Some(Signal::Logs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};

    type Captured = Arc<Mutex<Vec<http::Request<tonic::body::Body>>>>;

    /// Keeps the HTTP requests it is called with and answers each with a trailers-only OK.
    #[derive(Clone, Default)]
    struct Capture(Captured);

    impl tower::Service<http::Request<tonic::body::Body>> for Capture {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
            if let Ok(mut kept) = self.0.lock() {
                kept.push(request);
            }
            let mut response = http::Response::new(tonic::body::Body::empty());
            let headers = response.headers_mut();
            headers.insert("grpc-status", http::HeaderValue::from_static("0"));
            headers.insert(
                "content-type",
                http::HeaderValue::from_static("application/grpc"),
            );
            std::future::ready(Ok(response))
        }
    }

    fn capturing_client() -> (tonic::client::Grpc<PreEncodedBody<Capture>>, Captured) {
        let capture = Capture::default();
        let captured = capture.0.clone();
        (tonic::client::Grpc::new(PreEncodedBody(capture)), captured)
    }

    async fn sent_frames(captured: &Captured) -> Vec<Bytes> {
        let request = captured
            .lock()
            .expect("lock")
            .pop()
            .expect("a request was sent");
        assert!(request.extensions().get::<PreEncoded>().is_none());
        let mut body = request.into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("body").into_data() {
                frames.push(data);
            }
        }
        frames
    }

    #[tokio::test]
    async fn pre_encoded_parts_go_out_as_one_prefixed_message_without_copies() {
        let (mut client, captured) = capturing_client();
        let parts = vec![
            Bytes::from_static(b"first"),
            Bytes::new(),
            Bytes::from_static(b"second"),
        ];
        let call = pre_encoded_request(MetadataMap::new(), parts.clone());
        assert!(call.get_ref().is_empty());
        client.ready().await.expect("ready");
        // The answer carries no message; only what was sent matters here.
        let _ = client
            .unary::<Bytes, Bytes, _>(call, export_path(Signal::Traces), RawCodec)
            .await;
        let frames = sent_frames(&captured).await;
        // Not compressed, 11 bytes, then the non-empty parts themselves (same memory).
        assert_eq!(frames[0].as_ref(), &[0, 0, 0, 0, 11]);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[1].as_ptr(), parts[0].as_ptr());
        assert_eq!(frames[2].as_ptr(), parts[2].as_ptr());
    }

    #[tokio::test]
    async fn other_requests_are_encoded_by_tonic_as_usual() {
        let (mut client, captured) = capturing_client();
        client.ready().await.expect("ready");
        let call = tonic::Request::new(Bytes::from_static(b"x"));
        let _ = client
            .unary::<Bytes, Bytes, _>(call, export_path(Signal::Logs), RawCodec)
            .await;
        let frames = sent_frames(&captured).await;
        assert_eq!(frames.concat(), b"\0\0\0\0\x01x");
    }
}
