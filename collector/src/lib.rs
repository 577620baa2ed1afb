//! The sluice binary: config, pipeline wiring, admin server
