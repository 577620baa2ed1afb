//! The Alloy syntax itself: comments, strings, numbers, operators and the way statements end,
//! seen through the TOML each expression turns into.

use sluice_alloy::{check_syntax, convert, line_col};

fn env_none(_: &str) -> Option<String> {
    None
}

/// The TOML line for `send_batch_size = <expr>` of a batch processor.
fn batch_size(expr: &str) -> String {
    let text = format!(
        r#"
otelcol.receiver.otlp "in" {{
  grpc {{}}
  output {{ traces = [otelcol.processor.batch.b.input] }}
}}
otelcol.processor.batch "b" {{
  send_batch_size = {expr}
  output {{ traces = [otelcol.exporter.debug.d.input] }}
}}
otelcol.exporter.debug "d" {{}}
"#
    );
    let c = convert(&text, &env_none).unwrap_or_else(|e| panic!("{e:?}"));
    c.toml
        .lines()
        .find(|l| l.starts_with("send_batch_size"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn arithmetic_follows_precedence() {
    assert_eq!(batch_size("2 * 3 + 4"), "send_batch_size = 10");
    assert_eq!(batch_size("2 + 3 * 4"), "send_batch_size = 14");
    assert_eq!(batch_size("(2 + 3) * 4"), "send_batch_size = 20");
    assert_eq!(batch_size("2 ^ 3 ^ 2"), "send_batch_size = 512");
    assert_eq!(batch_size("-(-7) % 4"), "send_batch_size = 3");
    assert_eq!(batch_size("[10, 20, 30][1]"), "send_batch_size = 20");
    assert_eq!(batch_size("{ a = 5 }.a"), "send_batch_size = 5");
    assert_eq!(
        batch_size("json_decode(\"[1, 42]\")[1]"),
        "send_batch_size = 42"
    );
}

#[test]
fn strings_escapes_and_raw_strings() {
    let text = "otelcol.exporter.otlp \"t\" {\n  client {\n    endpoint = \"http://h:1\"\n    headers = { \"A\" = \"tab\\there \\\"q\\\" \\u00e9\\x41\", \"B\" = `raw\\n\"x\"` }\n  }\n}\n";
    let c = convert(text, &env_none).unwrap();
    assert!(c.toml.contains(r#"A = "tab\there \"q\" éA""#), "{}", c.toml);
    assert!(c.toml.contains(r#"B = "raw\\n\"x\"""#), "{}", c.toml);
}

#[test]
fn comments_of_every_kind() {
    check_syntax(
        "# hash comment\n// line comment\n/* block\n comment */ a \"b\" { // trailing\n  x = 1 /* inline */\n}\n",
    )
    .unwrap();
}

#[test]
fn statements_end_at_newlines_but_lists_span_lines() {
    check_syntax("a \"b\" {\n  x = [\n    1,\n    2,\n  ]\n  y = {\n    k = \"v\",\n  }\n  z = 1 +\n    2\n}\n").unwrap();
    let e = check_syntax("a \"b\" {\n  x = 1 y = 2\n}\n").unwrap_err();
    assert_eq!(line_col("a \"b\" {\n  x = 1 y = 2\n}\n", e.pos), (2, 9));
    assert_eq!(
        e.reason,
        "expected end of line after the statement, found identifier \"y\""
    );
}

#[test]
fn boolean_and_comparison_operators() {
    let text = r#"
otelcol.exporter.otlp "t" {
  client {
    endpoint = "http://h:1"
    tls {
      insecure_skip_verify = !false && (1 < 2) && ("a" != "b") || false
    }
  }
}
"#;
    let c = convert(text, &env_none).unwrap();
    assert!(c.toml.contains("insecure_skip_verify = true"), "{}", c.toml);
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncé d", 7), (2, 4));
    assert_eq!(line_col("", 10), (1, 1));
}

/// Malformed input is an error, never a panic: every prefix of `configs/alloy-config.river`, and the file
/// with each character replaced by each of a set of troublesome ones.
#[test]
fn no_input_panics() {
    let prd = include_str!("../../../configs/alloy-config.river");
    let env = |_: &str| Some("x".to_string());
    let boundaries: Vec<usize> = (0..=prd.len())
        .filter(|i| prd.is_char_boundary(*i))
        .collect();
    for &i in &boundaries {
        let _ = convert(&prd[..i], &env);
    }
    let troublemakers = [
        "\"",
        "`",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        ".",
        "=",
        ",",
        "\\",
        "/*",
        "é",
        "\n",
        "-",
        "^",
        "9999999999999999999999",
        "env(",
        "#",
    ];
    for w in boundaries.windows(2) {
        for t in troublemakers {
            let text = format!("{}{t}{}", &prd[..w[0]], &prd[w[1]..]);
            let _ = convert(&text, &env);
        }
    }
    assert!(convert(prd, &env).is_ok());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for (open, close) in [("[", "]"), ("(", ")"), ("!", ""), ("-", ""), ("2 ^ ", "2")] {
        let text = format!(
            "a \"b\" {{\n  x = {}1{}\n}}\n",
            open.repeat(100_000),
            close.repeat(100_000)
        );
        let e = check_syntax(&text).unwrap_err();
        assert_eq!(e.reason, "nested more than 64 levels deep", "{open}");
    }
    let blocks = format!("{}{}", "a {\n".repeat(100_000), "}\n".repeat(100_000));
    assert_eq!(
        check_syntax(&blocks).unwrap_err().reason,
        "nested more than 64 levels deep"
    );
    // Nesting up to the limit evaluates within a 2 MiB thread stack (a tokio worker's).
    let deep = format!("{}[7]{}", "(".repeat(60), ")".repeat(60));
    let size = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || batch_size(&format!("{deep}[0]")))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(size, "send_batch_size = 7");
    // Reasonable nesting is fine.
    check_syntax(&format!(
        "a \"b\" {{\n  x = {}1{}\n}}\n",
        "[".repeat(50),
        "]".repeat(50)
    ))
    .unwrap();
}

#[test]
fn errors_display_their_offset_key_and_reason() {
    let e = check_syntax("}\n").unwrap_err();
    assert_eq!(e.to_string(), "byte 0: unmatched '}'");
    let e = convert("log_level = 1\n", &env_none).unwrap_err();
    assert_eq!(
        e.to_string(),
        "byte 0: log_level: attributes are not allowed at the top level of an Alloy file; put them in a component block"
    );
}
