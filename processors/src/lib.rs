//! Ingest-path processors: batch settings, attributes, redaction
