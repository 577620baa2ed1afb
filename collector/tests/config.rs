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
    let e = err(&BASE.replace("type = \"debug\"", "type = \"kafka\""));
    assert_eq!(e.key, "exporters.out.type");
    assert!(e.reason.contains("unknown exporter type \"kafka\""), "{e}");
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
    assert!(sluice::config::expand("${A", &env).is_err());
    assert!(sluice::config::expand("${bad-name}", &env).is_err());
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
