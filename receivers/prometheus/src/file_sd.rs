//! File-based service discovery (Prometheus configuration docs, `<file_sd_config>`): JSON or
//! YAML files each holding a list of `{targets, labels}` groups. Every group gets the label
//! `__meta_filepath`. Files are checked for changes every second (name, size, modification
//! time) and re-read whole on a change and every `refresh_interval`. A file that cannot be
//! read or parsed keeps the targets it last gave, as in Prometheus, and is counted.

use crate::config::{FileSdConfig, TargetGroup};
use sluice_core::InvalidConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// File-SD files that could not be read or parsed.
pub const READ_ERRORS: &str = "sluice_prometheus_scrape_sd_file_read_errors_total";

/// Why a `files` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must name a file")]
    NoFileName,
    #[error("{0:?} must end in .json, .yml or .yaml")]
    Extension(String),
    #[error("only '*' and '?' wildcards are supported")]
    BracketWildcard,
    #[error("wildcards are allowed only in the file name")]
    WildcardInDirectory,
}

/// Why a file-SD file gave no targets this time.
#[derive(Debug, thiserror::Error)]
pub enum FileSdError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a JSON list of target groups: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a YAML list of target groups: {0}")]
    Yaml(#[from] serde_norway::Error),
    #[error("group {index}: {source}")]
    Group { index: usize, source: InvalidConfig },
}

/// Checks one `files` entry: a `.json`, `.yml` or `.yaml` path, wildcards only in its last
/// segment.
pub fn check_pattern(path: &Path) -> Result<(), PatternError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or(PatternError::NoFileName)?;
    if ![".json", ".yml", ".yaml"]
        .iter()
        .any(|ext| name.ends_with(ext))
    {
        return Err(PatternError::Extension(name.to_owned()));
    }
    if name.contains('[') {
        return Err(PatternError::BracketWildcard);
    }
    if let Some(dir) = path.parent()
        && dir.to_string_lossy().contains(['*', '?', '['])
    {
        return Err(PatternError::WildcardInDirectory);
    }
    Ok(())
}

/// `*` matches any run of characters, `?` one character.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The files a pattern names now, sorted.
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    let dir = match pattern.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| wildcard_match(name, n))
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Reads one file's target groups.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, FileSdError> {
    let text = std::fs::read_to_string(path)?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    let groups: Vec<TargetGroup> = if is_json {
        serde_json::from_str(&text)?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_norway::from_str(&text)?
    };
    for (index, g) in groups.iter().enumerate() {
        g.validate()
            .map_err(|source| FileSdError::Group { index, source })?;
    }
    Ok(groups)
}

type Signature = Vec<(PathBuf, Option<SystemTime>, u64)>;

/// The state of one receiver's `file_sd_configs`.
pub struct FileDiscovery {
    configs: Vec<FileSdConfig>,
    component_id: String,
    /// The groups each file last gave.
    groups: BTreeMap<PathBuf, Vec<TargetGroup>>,
    signature: Signature,
    next_full: Vec<Instant>,
    started: bool,
}

impl FileDiscovery {
    pub fn new(configs: Vec<FileSdConfig>, component_id: &str) -> FileDiscovery {
        let n = configs.len();
        FileDiscovery {
            configs,
            component_id: component_id.to_owned(),
            groups: BTreeMap::new(),
            signature: Vec::new(),
            next_full: vec![Instant::now(); n],
            started: false,
        }
    }

    /// How often [`FileDiscovery::poll`] should be called.
    pub const POLL: Duration = Duration::from_secs(1);

    fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .configs
            .iter()
            .flat_map(|c| c.files.iter().flat_map(|p| expand(p)))
            .collect();
        files.sort();
        files.dedup();
        files
    }

    /// Re-reads the files when they changed or a refresh is due; returns every discovered
    /// group (with `__meta_filepath`) when the result may differ from the last one.
    pub fn poll(&mut self, now: Instant) -> Option<Vec<TargetGroup>> {
        let files = self.files();
        let signature: Signature = files
            .iter()
            .filter_map(|p| {
                let meta = std::fs::metadata(p).ok()?;
                Some((p.clone(), meta.modified().ok(), meta.len()))
            })
            .collect();
        let due = self.next_full.iter().any(|t| now >= *t);
        if self.started && !due && signature == self.signature {
            return None;
        }
        self.started = true;
        for (t, c) in self.next_full.iter_mut().zip(&self.configs) {
            if now >= *t {
                *t = now + c.refresh_interval.get();
            }
        }
        let mut groups = BTreeMap::new();
        for (path, ..) in &signature {
            match read_file(path) {
                Ok(g) => {
                    groups.insert(path.clone(), g);
                }
                Err(error) => {
                    tracing::warn!(component_id = %self.component_id, path = %path.display(), %error, "file_sd: keeping this file's previous targets");
                    metrics::counter!(READ_ERRORS, "component_id" => self.component_id.clone())
                        .increment(1);
                    if let Some(old) = self.groups.remove(path) {
                        groups.insert(path.clone(), old);
                    }
                }
            }
        }
        self.signature = signature;
        self.groups = groups;
        Some(
            self.groups
                .iter()
                .flat_map(|(path, gs)| {
                    gs.iter().map(move |g| {
                        let mut g = g.clone();
                        g.labels
                            .insert("__meta_filepath".into(), path.display().to_string());
                        g
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::config::DurationStr;

    fn config(pattern: PathBuf) -> FileSdConfig {
        FileSdConfig {
            files: vec![pattern],
            refresh_interval: DurationStr::from_secs(300),
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.json", "a.json"));
        assert!(wildcard_match("t?-*.yml", "t1-x.yml"));
        assert!(!wildcard_match("*.json", "a.yml"));
        assert!(!wildcard_match("a*b", "acbd"));
        assert!(check_pattern(Path::new("/etc/*/t.json")).is_err());
        assert!(check_pattern(Path::new("/etc/t.txt")).is_err());
        assert!(check_pattern(Path::new("/etc/t*.yaml")).is_ok());
    }

    #[test]
    fn reads_json_and_yaml_and_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets": ["127.0.0.1:9100"], "labels": {"env": "prod"}}]"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "- targets: ['127.0.0.1:9090', '127.0.0.1:9091']\n",
        )
        .unwrap();
        let mut sd = FileDiscovery::new(
            vec![
                config(dir.path().join("*.json")),
                config(dir.path().join("*.yml")),
            ],
            "receivers.scrape",
        );
        let t0 = Instant::now();
        let groups = sd.poll(t0).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].targets, ["127.0.0.1:9100"]);
        assert_eq!(groups[0].labels["env"], "prod");
        assert_eq!(
            groups[0].labels["__meta_filepath"],
            dir.path().join("a.json").display().to_string()
        );
        assert_eq!(groups[1].targets.len(), 2);
        // Nothing changed: nothing to report.
        assert!(sd.poll(t0).is_none());

        // A change (size differs) is seen; a broken file keeps its previous groups.
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets": ["127.0.0.1:9100", "127.0.0.1:9200"]}]"#,
        )
        .unwrap();
        let groups = sd.poll(t0).unwrap();
        assert_eq!(groups[0].targets.len(), 2);
        std::fs::write(dir.path().join("b.yml"), "- targets: [unclosed\n").unwrap();
        let groups = sd.poll(t0).unwrap();
        assert_eq!(groups.len(), 2, "{groups:?}");
        assert_eq!(groups[1].targets, ["127.0.0.1:9090", "127.0.0.1:9091"]);

        // A removed file removes its targets; the refresh interval forces a re-read.
        std::fs::remove_file(dir.path().join("b.yml")).unwrap();
        let groups = sd.poll(t0).unwrap();
        assert_eq!(groups.len(), 1);
        assert!(sd.poll(t0 + Duration::from_secs(301)).is_some());
    }

    #[test]
    fn invalid_groups_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"[{"targets": ["http://x:1/metrics"]}]"#).unwrap();
        assert!(
            read_file(&path)
                .unwrap_err()
                .to_string()
                .contains("targets[0]")
        );
        std::fs::write(
            &path,
            r#"[{"targets": ["x:1"], "labels": {"bad-name": "v"}}]"#,
        )
        .unwrap();
        assert!(read_file(&path).is_err());
        std::fs::write(&path, r#"{"targets": []}"#).unwrap();
        assert!(read_file(&path).is_err());
    }
}
