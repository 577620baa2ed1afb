//! OTLP exporter (Tempo) and debug exporter
