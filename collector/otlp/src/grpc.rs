//! OTLP over gRPC without decoding: a tonic codec that hands message bytes through untouched
//! (receivers validate them with the walker; exporters, the load generator and test backends
//! send pre-encoded requests), and the method paths of the three Export services.

use bytes::{Buf, BufMut, Bytes};
use sluice_core::Signal;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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
