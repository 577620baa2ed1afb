//! OTLP wire helpers: validating protobuf walker, item counting, JSON conversion
