//! Config loading: every shipped file validates, and every kind of mistake fails with the file,
//! the line, the key and a reason.

use sluice::config::{ConfigError, parse};
use std::path::Path;
use std::process::Command;

fn env_none(_: &str) -> Option<String> {
    None
}

fn err(text: &str) -> ConfigError {
    parse(Path::new("test.toml"), text, &env_none).expect_err("config must be refused")
}

const BASE: &str = r#"
[receivers.otlp]
type = "otlp"
[receivers.otlp.grpc]
endpoint = "127.0.0.1:14317"

[exporters.out]
type = "debug"

[[pipelines]]
name = "p"
signals = ["traces"]
receivers = ["otlp"]
exporters = ["out"]
"#;

#[test]
fn base_config_is_valid() {
    let c = parse(Path::new("test.toml"), BASE, &env_none).expect("valid");
    assert_eq!(c.pipelines.len(), 1);
    assert_eq!(c.pipelines[0].exporters, vec!["out".to_string()]);
}

#[test]
fn shipped_configs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // The deployment configs take secrets from the environment and have no defaults
            // for them (they refuse to start without); placeholders stand in here.
            let secrets = |name: &str| match name {
                "AWF_PUSH_TOKEN"
                | "WATCHER_WEBHOOK_TOKEN"
                | "WATCHER_HMAC_SECRET"
                | "WATCHER_APPROVER_TOKEN" => Some("validate-only".to_owned()),
                _ => std::env::var(name).ok(),
            };
            let text = std::fs::read_to_string(&path).unwrap();
            sluice::config::parse(&path, &text, &secrets).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "dev, compose and sidecar at least");
}

#[test]
fn unknown_key_names_line_and_key() {
    let text = BASE.replace(
        "type = \"debug\"",
        "type = \"debug\"\nverbosityy = \"basic\"",
    );
    let e = err(&text);
    assert_eq!(e.key, "exporters.out.verbosityy");
    assert_eq!(e.line, 9, "{e}");
    assert!(e.reason.contains("unknown field"), "{e}");
    assert!(e.to_string().starts_with("test.toml:9:"), "{e}");
}

#[test]
fn unknown_top_level_section() {
    let e = err(&format!("{BASE}\n[extensions.x]\ntype = \"y\"\n"));
    assert!(e.reason.contains("unknown field `extensions`"), "{e}");
    assert_eq!(e.line, 16, "{e}");
}

#[test]
fn unknown_component_type_lists_known_ones() {
    let e = err(&BASE.replace("type = \"debug\"", "type = \"zipkin\""));
    assert_eq!(e.key, "exporters.out.type");
    assert!(e.reason.contains("unknown exporter type \"zipkin\""), "{e}");
    assert!(
        e.reason.contains("otlp") && e.reason.contains("loki"),
        "{e}"
    );
    assert_eq!(e.line, 8);
}

#[test]
fn dangling_reference() {
    let e = err(&BASE.replace("exporters = [\"out\"]", "exporters = [\"tempo\"]"));
    assert_eq!(e.key, "pipelines[0].exporters");
    assert!(e.reason.contains("no exporter named \"tempo\""), "{e}");
    assert_eq!(e.line, 14);
}

#[test]
fn pipeline_without_exporter() {
    let e = err(&BASE.replace("exporters = [\"out\"]", "exporters = []"));
    assert!(e.reason.contains("at least one exporter"), "{e}");
}

#[test]
fn exporter_that_cannot_take_the_signal() {
    let text = BASE.replace(
        "type = \"debug\"",
        "type = \"loki\"\nurl = \"http://loki:3100/loki/api/v1/push\"",
    );
    let e = err(&text);
    assert!(e.reason.contains("cannot export traces"), "{e}");
}

#[test]
fn two_listeners_on_one_address() {
    let text = format!(
        "{BASE}\n[receivers.second]\ntype = \"otlp\"\n[receivers.second.http]\nendpoint = \"0.0.0.0:14317\"\n"
    );
    let e = err(&text.replace(
        "receivers = [\"otlp\"]",
        "receivers = [\"otlp\", \"second\"]",
    ));
    assert!(
        e.reason
            .contains("also used by receivers.otlp.grpc.endpoint"),
        "{e}"
    );
    assert_eq!(e.key, "receivers.second.http.endpoint");
}

#[test]
fn env_substitution_with_defaults_and_missing_vars() {
    let text = BASE.replace("127.0.0.1:14317", "${OTLP_ADDR:-127.0.0.1:4999}");
    let c = parse(Path::new("t.toml"), &text, &env_none).unwrap();
    assert!(format!("{:?}", c.receivers["otlp"]).contains("127.0.0.1:4999"));
    let set = |name: &str| (name == "OTLP_ADDR").then(|| "127.0.0.1:5000".to_string());
    let c = parse(Path::new("t.toml"), &text, &set).unwrap();
    assert!(format!("{:?}", c.receivers["otlp"]).contains("127.0.0.1:5000"));
    let e = err(&BASE.replace("127.0.0.1:14317", "${OTLP_ADDR}"));
    assert!(e.reason.contains("OTLP_ADDR is not set"), "{e}");
    assert_eq!(e.key, "receivers.otlp.grpc.endpoint");
    assert_eq!(e.line, 5);
}

#[test]
fn expand_rules() {
    let env = |n: &str| match n {
        "A" => Some("x".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    assert_eq!(sluice::config::expand("${A}-${B:-d}", &env).unwrap(), "x-d");
    assert_eq!(
        sluice::config::expand("$${A} costs $5", &env).unwrap(),
        "${A} costs $5"
    );
    assert_eq!(
        sluice::config::expand("${EMPTY:-fallback}", &env).unwrap(),
        "fallback"
    );
    assert_eq!(
        sluice::config::expand("${A", &env),
        Err(sluice::config::ExpandError::Unclosed("${A".into()))
    );
    assert!(matches!(
        sluice::config::expand("${bad-name}", &env),
        Err(sluice::config::ExpandError::InvalidName { .. })
    ));
}

#[test]
fn bad_values_are_refused_with_reason() {
    let text = format!("{BASE}[pipelines.spool]\nfsync = \"sometimes\"\n");
    let e = err(&text);
    assert!(e.reason.contains("unknown variant `sometimes`"), "{e}");
    let text = format!("{BASE}[pipelines.spool]\nmax_bytes = \"lots\"\n");
    let e = err(&text);
    assert!(e.reason.contains("invalid size"), "{e}");
}

#[test]
fn checks_report_the_key_path_they_refuse() {
    // Nested below the component (retry), in a shared setting (tls), in the pipeline's spool:
    // the key path comes from the check itself, the line is the key's.
    let text = BASE.replace(
        "type = \"debug\"\n",
        "type = \"debug\"\n[exporters.out.retry]\ninitial_interval = \"1s\"\nmultiplier = 0.5\n",
    );
    let e = err(&text);
    assert_eq!(e.key, "exporters.out.retry.multiplier", "{e}");
    assert_eq!(e.reason, "must be >= 1, got 0.5", "{e}");
    assert_eq!(e.line, 11, "{e}");
    assert!(
        e.to_string()
            .starts_with("test.toml:11:1: exporters.out.retry.multiplier: must be >= 1"),
        "{e}"
    );

    let text = format!(
        "{BASE}\n[exporters.loki]\ntype = \"loki\"\nurl = \"http://loki:3100/loki/api/v1/push\"\ntls = {{ cert_file = \"/c.pem\" }}\n"
    );
    let e = err(&text);
    assert_eq!(e.key, "exporters.loki.tls.key_file", "{e}");
    assert_eq!(e.line, 19, "{e}");

    let text = format!("{BASE}[pipelines.spool]\nqueue_capacity = 0\n");
    let e = err(&text);
    assert_eq!(e.key, "pipelines[0].spool.queue_capacity", "{e}");
    assert_eq!(e.reason, "must be at least 1", "{e}");
    assert_eq!(e.line, 16, "{e}");
}

#[test]
fn validate_command_exits_nonzero_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(
        &path,
        BASE.replace("exporters = [\"out\"]", "exporters = [\"nope\"]"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:14:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("no exporter named \"nope\""), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, BASE).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("validate")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sluice(args: &[&std::ffi::OsStr]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_reports_each_of_several_files_then_a_summary_in_plain_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), BASE).unwrap();
    std::fs::write(
        dir.path().join("b.toml"),
        BASE.replace("exporters = [\"out\"]", "exporters = [\"nope\"]"),
    )
    .unwrap();
    std::fs::write(dir.path().join("c.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("notes.md"), "not a config").unwrap();
    // A directory stands for its config files; stdout and stderr are pipes here.
    let (ok, stdout, stderr) = sluice(&["validate".as_ref(), dir.path().as_os_str()]);
    assert!(!ok, "one file is broken");
    for name in ["a.toml", "c.toml"] {
        let line = format!("{}: ok (", dir.path().join(name).display());
        assert!(stdout.contains(&line), "{name}: {stdout}");
    }
    let broken = format!("{}:14:", dir.path().join("b.toml").display());
    assert!(stderr.contains(&broken), "{stderr}");
    let summary = stderr.lines().last().unwrap_or_default();
    assert!(summary.starts_with("validated 3 files in "), "{stderr}");
    assert!(summary.ends_with(": 2 ok, 1 failed"), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stdout.contains('\x1b'),
        "{stderr:?}"
    );
    // One file: its result only, as before.
    let (ok, _, stderr) = sluice(&["validate".as_ref(), dir.path().join("a.toml").as_os_str()]);
    assert!(ok && stderr.is_empty(), "{stderr}");
}

#[test]
fn validate_on_a_terminal_shows_a_live_line_per_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.toml", "b.toml"] {
        std::fs::write(dir.path().join(name), BASE).unwrap();
    }
    // util-linux `script` runs the command on a pseudo-terminal.
    let command = format!(
        "{} validate {}",
        env!("CARGO_BIN_EXE_sluice"),
        dir.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) on PATH");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    for (i, name) in ["a.toml", "b.toml"].iter().enumerate() {
        let live = format!(
            "\r\x1b[2K[{}/2] validating {}",
            i + 1,
            dir.path().join(name).display()
        );
        assert!(screen.contains(&live), "{live:?} missing in {screen:?}");
    }
    assert!(screen.contains("validated 2 files in "), "{screen:?}");
}

#[test]
fn a_large_file_is_announced_before_it_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let padding = "# padding\n".repeat(110_000);
    std::fs::write(&big, format!("{BASE}{padding}")).unwrap();
    let (ok, stdout, stderr) = sluice(&["validate".as_ref(), big.as_os_str()]);
    assert!(ok, "{stderr}");
    assert_eq!(stderr, format!("validating {} (1.0 MiB)\n", big.display()));
    assert!(stdout.contains(": ok ("), "{stdout}");
}

#[test]
fn convert_writes_several_alloy_files_to_the_output_dir() {
    let dir = tempfile::tempdir().unwrap();
    let alloy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/alloy-config.river");
    let inputs = dir.path().join("alloy");
    std::fs::create_dir(&inputs).unwrap();
    for name in ["one.alloy", "two.river"] {
        std::fs::copy(&alloy, inputs.join(name)).unwrap();
    }
    let (ok, _, stderr) = sluice(&["convert".as_ref(), inputs.as_os_str()]);
    assert!(!ok, "several files need --output-dir");
    assert!(stderr.contains("give --output-dir"), "{stderr}");

    let out = dir.path().join("toml");
    let (ok, stdout, stderr) = sluice(&[
        "convert".as_ref(),
        inputs.as_os_str(),
        "--output-dir".as_ref(),
        out.as_os_str(),
    ]);
    assert!(ok, "{stderr}");
    for (name, toml) in [("one.alloy", "one.toml"), ("two.river", "two.toml")] {
        let line = format!(
            "{} -> {}",
            inputs.join(name).display(),
            out.join(toml).display()
        );
        assert!(stdout.contains(&line), "{line}: {stdout}");
        let (ok, _, stderr) = sluice(&["validate".as_ref(), out.join(toml).as_os_str()]);
        assert!(ok, "{toml}: {stderr}");
    }
    assert!(stderr.starts_with("converted 2 files in "), "{stderr}");
    assert!(stderr.trim_end().ends_with(": 2 ok, 0 failed"), "{stderr}");
}
