//! Loki push exporter
