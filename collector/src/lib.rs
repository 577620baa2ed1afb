//! The Sluice collector: configuration, pipeline wiring, admin server and the process around
//! them. The `sluice` binary is a thin CLI over this library, which tests drive directly too.

pub mod admin;
pub mod alloy;
pub mod api;
pub mod app;
pub mod awf_sim;
pub mod config;
pub mod dead_letter;
mod isolate;
pub mod pipeline;
pub mod progress;
pub mod registry;
pub mod replay;
pub mod storage;
pub mod topology;

/// `configs/dev.toml`, built in so `sluice run` works with no file and no backends.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../configs/dev.toml");
