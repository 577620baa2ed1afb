//! Alloy configuration files (`.alloy`, `.river`): `sluice_alloy` turns them into Sluice TOML,
//! which the TOML loader then checks; errors from either step are reported at the Alloy file's
//! line and column, with the Alloy name of what is wrong.

use crate::config::{Config, ConfigError, EnvLookup, parse_toml};
use std::path::Path;

pub use sluice_alloy::{Converted, Logging};

fn error(path: &Path, text: &str, pos: usize, key: String, reason: String) -> ConfigError {
    let (line, column) = sluice_alloy::line_col(text, pos);
    ConfigError {
        file: path.to_owned(),
        line,
        column,
        key,
        reason,
    }
}

/// The Sluice TOML equivalent of an Alloy file (`sluice convert`).
pub fn convert(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Converted, ConfigError> {
    sluice_alloy::convert(text, env).map_err(|e| error(path, text, e.pos, e.key, e.reason))
}

/// Loads an Alloy file: converted, then checked like any TOML config.
pub fn parse(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let converted = convert(path, text, env)?;
    let mut config = parse_toml(path, &converted.toml, env).map_err(|e| {
        // The TOML loader's line is a line of the generated TOML; each knows its Alloy origin.
        match e.line.checked_sub(1).and_then(|i| converted.origins.get(i)) {
            Some(o) => {
                let key = if o.key.is_empty() {
                    e.key
                } else {
                    o.key.clone()
                };
                error(path, text, o.pos, key, e.reason)
            }
            None => error(path, text, 0, e.key, e.reason),
        }
    })?;
    config.text = text.to_owned();
    Ok(config)
}

/// The `logging { }` block of an Alloy file, if it is one and has one.
pub fn logging(path: &Path, text: &str) -> Option<Logging> {
    if !sluice_alloy::is_alloy(path, text) {
        return None;
    }
    sluice_alloy::convert(text, &|v| std::env::var(v).ok())
        .ok()
        .and_then(|c| c.logging)
}
