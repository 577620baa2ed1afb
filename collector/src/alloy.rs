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
        let line = refine(&converted.toml, e.line, &e.key, &e.reason);
        match line.checked_sub(1).and_then(|i| converted.origins.get(i)) {
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

/// The TOML loader places some errors at the start of a component's table. When the error's
/// key ends in a field or the reason quotes a value (`invalid duration "1 second"`), the line
/// of the generated TOML that sets it is a more precise origin. A component's lines run up to
/// the next blank line (the generator separates sections with one).
fn refine(toml: &str, line: usize, key: &str, reason: &str) -> usize {
    let lines: Vec<&str> = toml.lines().collect();
    let Some(start) = line
        .checked_sub(1)
        .filter(|i| lines.get(*i).is_some_and(|l| l.starts_with('[')))
    else {
        return line;
    };
    let section = lines[start..]
        .iter()
        .take_while(|l| !l.trim().is_empty())
        .enumerate();
    let leaf = key.rsplit('.').next().unwrap_or("");
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    let quoted = reason
        .split_once('"')
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(q, _)| format!("= \"{q}\""));
    for (i, l) in section {
        let is_field = !leaf.is_empty()
            && l.strip_prefix(leaf)
                .is_some_and(|r| r.trim_start().starts_with('='));
        let has_value = quoted.as_ref().is_some_and(|q| l.ends_with(q.as_str()));
        if is_field || has_value {
            return start + i + 1;
        }
    }
    line
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
