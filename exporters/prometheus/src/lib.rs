//! Prometheus remote-write exporter with OTLP translation
