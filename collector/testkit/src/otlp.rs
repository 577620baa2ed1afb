//! OTLP test backend (gRPC + HTTP) that decodes and records what it receives.
