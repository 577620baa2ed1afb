//! Loki push test backend (protobuf+snappy and JSON) that decodes and records streams.
