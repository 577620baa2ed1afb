//! Protocol-faithful test backends (OTLP, Loki, Tempo) for Sluice's tests
