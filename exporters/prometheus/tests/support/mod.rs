//! Shared test support: OTLP builders and a harness that runs the real Prometheus server.
#![allow(dead_code)]

pub mod otlp;
