//! The OTLP exporter: sends OTLP as it is to Tempo or any OTLP backend, over gRPC or
//! HTTP/protobuf.

pub mod otlp;
