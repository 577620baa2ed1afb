//! Progress of `sluice validate` and `sluice convert` over several or large files.
//!
//! On a terminal (stderr is a TTY) a live line, `[3/12] validating configs/a.toml`, is redrawn
//! in place and cleared before each file's result is printed, so only results stay on screen.
//! Elsewhere (CI logs, pipes) no escape codes: a large file gets a plain line when its work
//! starts. With several files a summary line closes the run. One small file prints nothing
//! more than its result, as before.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A file at least this large is announced, even alone: its work may take a while.
pub const LARGE_FILE: u64 = 1024 * 1024;

/// Config files: what `sluice validate` takes from a directory.
pub const CONFIG_FILES: &[&str] = &["toml", "alloy", "river"];
/// Alloy files: what `sluice convert` takes from a directory.
pub const ALLOY_FILES: &[&str] = &["alloy", "river"];

/// Why the command line's inputs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: cannot read directory: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no {patterns} files in this directory", dir.display())]
    NoFiles { dir: PathBuf, patterns: String },
}

/// Files named on the command line, with each directory replaced by its files with one of
/// `extensions` (sorted; not recursive).
pub fn expand_inputs(args: &[PathBuf], extensions: &[&str]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for arg in args {
        if !arg.is_dir() {
            out.push(arg.clone());
            continue;
        }
        let entries = std::fs::read_dir(arg).map_err(|source| InputError::ReadDir {
            dir: arg.clone(),
            source,
        })?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|x| x.to_str())
                        .is_some_and(|x| extensions.contains(&x))
            })
            .collect();
        if found.is_empty() {
            let patterns: Vec<String> = extensions.iter().map(|x| format!("*.{x}")).collect();
            return Err(InputError::NoFiles {
                dir: arg.clone(),
                patterns: patterns.join(", "),
            });
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A line redrawn in place (stderr is a terminal).
    Live,
    /// Plain lines, no escape codes.
    Plain,
}

impl Mode {
    /// `Live` when stderr is a terminal that understands escape codes.
    pub fn detect() -> Mode {
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        if std::io::stderr().is_terminal() && !dumb {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// Progress over a list of files; writes to `out` (stderr in the CLI).
pub struct FileProgress<W: Write> {
    out: W,
    mode: Mode,
    /// "validating" / "converting", and "validated" / "converted" for the summary.
    doing: &'static str,
    done_verb: &'static str,
    total: usize,
    current: usize,
    ok: usize,
    failed: usize,
    drawn: bool,
    started: Instant,
}

impl FileProgress<std::io::Stderr> {
    pub fn stderr(doing: &'static str, done_verb: &'static str, total: usize) -> Self {
        FileProgress::new(std::io::stderr(), Mode::detect(), doing, done_verb, total)
    }
}

impl<W: Write> FileProgress<W> {
    pub fn new(
        out: W,
        mode: Mode,
        doing: &'static str,
        done_verb: &'static str,
        total: usize,
    ) -> Self {
        FileProgress {
            out,
            mode,
            doing,
            done_verb,
            total,
            current: 0,
            ok: 0,
            failed: 0,
            drawn: false,
            started: Instant::now(),
        }
    }

    /// Work on `path` starts. Call [`FileProgress::end`] before printing its result.
    pub fn begin(&mut self, path: &Path) {
        self.current += 1;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let large = size >= LARGE_FILE;
        let size_note = if large {
            format!(" ({})", sluice_spool::human_bytes(size))
        } else {
            String::new()
        };
        let position = if self.total > 1 {
            format!("[{}/{}] ", self.current, self.total)
        } else {
            String::new()
        };
        // Progress output is best effort: a closed stderr must not fail the command.
        match self.mode {
            Mode::Live if self.total > 1 || large => {
                let _ = write!(
                    self.out,
                    "\r\x1b[2K{position}{} {}{size_note}",
                    self.doing,
                    path.display()
                );
                let _ = self.out.flush();
                self.drawn = true;
            }
            Mode::Plain if large => {
                let _ = writeln!(
                    self.out,
                    "{position}{} {}{size_note}",
                    self.doing,
                    path.display()
                );
            }
            _ => {}
        }
    }

    /// Work on the current file ended; its result may be printed now.
    pub fn end(&mut self, ok: bool) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.clear();
    }

    fn clear(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "\r\x1b[2K");
            let _ = self.out.flush();
            self.drawn = false;
        }
    }

    /// The closing line when there were several files.
    pub fn finish(mut self) {
        self.clear();
        if self.total > 1 {
            let _ = writeln!(
                self.out,
                "{} {} files in {:.1}s: {} ok, {} failed",
                self.done_verb,
                self.total,
                self.started.elapsed().as_secs_f64(),
                self.ok,
                self.failed
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: Mode, files: &[(&Path, bool)]) -> String {
        let mut buf = Vec::new();
        {
            let mut p = FileProgress::new(&mut buf, mode, "validating", "validated", files.len());
            for (path, ok) in files {
                p.begin(path);
                p.end(*ok);
            }
            p.finish();
        }
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn one_small_file_adds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("a.toml");
        std::fs::write(&small, "x = 1\n").unwrap();
        assert_eq!(run(Mode::Live, &[(&small, true)]), "");
        assert_eq!(run(Mode::Plain, &[(&small, true)]), "");
    }

    #[test]
    fn several_files_get_a_live_line_on_a_terminal_and_a_summary() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.toml"), dir.path().join("b.toml"));
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, "").unwrap();
        let live = run(Mode::Live, &[(&a, true), (&b, false)]);
        assert!(
            live.contains(&format!("\r\x1b[2K[1/2] validating {}", a.display())),
            "{live:?}"
        );
        assert!(
            live.contains(&format!("\r\x1b[2K[2/2] validating {}", b.display())),
            "{live:?}"
        );
        assert!(live.ends_with(": 1 ok, 1 failed\n"), "{live:?}");
        assert!(
            live.contains("\r\x1b[2Kvalidated 2 files in "),
            "cleared before the summary: {live:?}"
        );
        let plain = run(Mode::Plain, &[(&a, true), (&b, false)]);
        assert!(
            !plain.contains('\x1b') && !plain.contains('\r'),
            "{plain:?}"
        );
        assert!(plain.starts_with("validated 2 files in "), "{plain:?}");
        assert!(plain.ends_with(": 1 ok, 1 failed\n"), "{plain:?}");
    }

    #[test]
    fn a_large_file_is_announced_alone_in_plain_lines() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.alloy");
        std::fs::write(&big, vec![b'\n'; 2 * LARGE_FILE as usize]).unwrap();
        let plain = run(Mode::Plain, &[(&big, true)]);
        assert_eq!(plain, format!("validating {} (2.0 MiB)\n", big.display()));
        let live = run(Mode::Live, &[(&big, true)]);
        assert_eq!(
            live,
            format!("\r\x1b[2Kvalidating {} (2.0 MiB)\r\x1b[2K", big.display())
        );
    }

    #[test]
    fn directories_expand_to_their_config_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.toml", "a.alloy", "c.river", "notes.md"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let got = expand_inputs(&[dir.path().to_owned()], CONFIG_FILES).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a.alloy", "b.toml", "c.river"]);
        let alloy = expand_inputs(&[dir.path().to_owned()], ALLOY_FILES).unwrap();
        assert_eq!(alloy.len(), 2);
        let empty = tempfile::tempdir().unwrap();
        let err = expand_inputs(&[empty.path().to_owned()], CONFIG_FILES)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no *.toml, *.alloy, *.river files"), "{err}");
    }
}
