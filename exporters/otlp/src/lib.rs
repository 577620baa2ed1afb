//! Exporters that send OTLP as it is: [`otlp`] (Tempo and any OTLP backend, gRPC or
//! HTTP/protobuf) and [`debug`] (logs batches and optionally appends OTLP/JSON lines to a file;
//! the exporter that needs no backend).

pub mod debug;
pub mod otlp;
