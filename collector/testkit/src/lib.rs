//! Protocol-faithful test backends for Sluice's tests. Each decodes what Sluice sends exactly as
//! the real backend would and lets tests assert on it.

pub mod loki;
pub mod otlp;
pub mod payloads;
pub mod prometheus;
pub mod tls;
