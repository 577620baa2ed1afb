//! Grafana Alloy's configuration syntax (`.alloy`, `.river`) for Sluice.
//!
//! A lexer and a recursive-descent parser read the file; expressions are evaluated (`env`,
//! `sys.env`, `coalesce`, `concat`, `json_decode`); the components and the references between
//! them are mapped onto Sluice's receivers, processors, exporters and pipelines, written as
//! Sluice TOML. Every line of that TOML remembers where in the Alloy file it came from, so the
//! TOML loader's errors can be reported against the Alloy file. No Rust crate parses Alloy
//! syntax (checked crates.io and docs.rs), hence the hand-written parser.

mod eval;
mod lexer;
mod mapping;
mod parser;

pub use mapping::{Converted, Logging, Origin};

/// A problem at a byte offset of the Alloy file (`line_col` turns it into a line and column).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("byte {pos}: {}{reason}", if key.is_empty() { String::new() } else { format!("{key}: ") })]
pub struct Error {
    pub pos: usize,
    /// Dotted Alloy path of what is wrong (`otelcol.exporter.otlp.tempo.client.endpoint`), or
    /// empty for syntax errors.
    pub key: String,
    pub reason: String,
}

impl Error {
    pub(crate) fn syntax(pos: usize, reason: impl Into<String>) -> Error {
        Error {
            pos,
            key: String::new(),
            reason: reason.into(),
        }
    }

    pub(crate) fn at(pos: usize, key: impl Into<String>, reason: impl Into<String>) -> Error {
        Error {
            pos,
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let mut pos = pos.min(text.len());
    while !text.is_char_boundary(pos) {
        pos -= 1;
    }
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Whether a config file is in Alloy syntax: by extension (`.alloy`, `.river`), else by its
/// first statement being a block (`name "label" {`) rather than TOML.
pub fn is_alloy(path: &std::path::Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some("alloy" | "river") => return true,
        Some("toml") => return false,
        _ => {}
    }
    let Ok(tokens) = lexer::lex(text) else {
        return false;
    };
    use lexer::Tok;
    let mut it = tokens
        .iter()
        .map(|t| &t.tok)
        .filter(|t| **t != Tok::Newline);
    if !matches!(it.next(), Some(Tok::Ident(_))) {
        return false;
    }
    loop {
        match it.next() {
            Some(Tok::Dot) => {
                if !matches!(it.next(), Some(Tok::Ident(_))) {
                    return false;
                }
            }
            Some(Tok::Str(_)) => return matches!(it.next(), Some(Tok::LBrace)),
            Some(Tok::LBrace) => return true,
            _ => return false,
        }
    }
}

/// Parses and evaluates an Alloy file and maps it to Sluice TOML. `env` looks up environment
/// variables for the values that must be read now (see `docs/alloy.md`).
pub fn convert(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Converted, Error> {
    let stmts = parser::parse(text)?;
    mapping::map(text, &stmts, env)
}

/// Syntax check only (tests and tools).
pub fn check_syntax(text: &str) -> Result<(), Error> {
    parser::parse(text).map(|_| ())
}
