//! Core types shared by every Sluice component.
//!
//! A pipeline carries [`Item`]s: one OTLP `Export*ServiceRequest` each, kept in its protobuf
//! encoding so that components which do not need the decoded form never pay for decoding.
//! Receivers hand items to a [`component::Consumer`]; exporters receive [`component::Batch`]es
//! from the pipeline's spool and turn them into requests.

pub mod batch;
pub mod component;
pub mod config;
pub mod item;
pub mod prometheus;
pub mod reason;
pub mod retry;
pub mod snappy;
pub mod telemetry;
pub mod time;

pub use component::{
    Batch, ComponentConfig, Consumer, Exporter, Processor, Receiver, ReceiverContext,
    ReceiverError, Refusal, SendOutcome,
};
pub use config::{ByteSize, DurationStr, InvalidConfig};
pub use item::{Item, Signal};
