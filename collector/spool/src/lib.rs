//! Durable segment spool with per-exporter cursors
