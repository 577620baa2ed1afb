//! `otelcol.processor.*` → Sluice processors. Most map attribute for attribute, described by
//! a `Spec` (which attributes, which nested blocks); batch and memory_limiter have their own
//! functions.

use super::Mapper;
use super::graph::Node;
use super::reader::Reader;
use super::toml_out::{Table, toml_key};
use crate::Error;
use crate::eval::EBlock;

/// How an Alloy processor block maps onto its Sluice processor's TOML: which attributes it
/// takes (same names), and which nested blocks (repeated ones become arrays of tables).
struct Spec {
    attrs: &'static [&'static str],
    blocks: &'static [Nested],
}

struct Nested {
    alloy: &'static str,
    toml: &'static str,
    repeated: bool,
    spec: &'static Spec,
}

impl Spec {
    fn block_names(&self) -> Vec<&'static str> {
        self.blocks.iter().map(|b| b.alloy).collect()
    }
}

const ACTION: Spec = Spec {
    attrs: &[
        "key",
        "value",
        "pattern",
        "from_attribute",
        "converted_type",
        "action",
    ],
    blocks: &[],
};
const ATTRIBUTES: Spec = Spec {
    attrs: &[],
    blocks: &[Nested {
        alloy: "action",
        toml: "actions",
        repeated: true,
        spec: &ACTION,
    }],
};
const FILTER: Spec = Spec {
    attrs: &["error_mode"],
    blocks: &[
        Nested {
            alloy: "traces",
            toml: "traces",
            repeated: false,
            spec: &Spec {
                attrs: &["span"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "metrics",
            toml: "metrics",
            repeated: false,
            spec: &Spec {
                attrs: &["metric", "datapoint"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "logs",
            toml: "logs",
            repeated: false,
            spec: &Spec {
                attrs: &["log_record"],
                blocks: &[],
            },
        },
    ],
};
const STATEMENTS: Spec = Spec {
    attrs: &["context", "statements"],
    blocks: &[],
};
const TRANSFORM: Spec = Spec {
    attrs: &["error_mode"],
    blocks: &[
        Nested {
            alloy: "trace_statements",
            toml: "trace_statements",
            repeated: true,
            spec: &STATEMENTS,
        },
        Nested {
            alloy: "metric_statements",
            toml: "metric_statements",
            repeated: true,
            spec: &STATEMENTS,
        },
        Nested {
            alloy: "log_statements",
            toml: "log_statements",
            repeated: true,
            spec: &STATEMENTS,
        },
    ],
};
const POLICY: Spec = Spec {
    attrs: &["name", "type"],
    blocks: &[
        Nested {
            alloy: "status_code",
            toml: "status_code",
            repeated: false,
            spec: &Spec {
                attrs: &["status_codes"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "latency",
            toml: "latency",
            repeated: false,
            spec: &Spec {
                attrs: &["threshold_ms", "upper_threshold_ms"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "probabilistic",
            toml: "probabilistic",
            repeated: false,
            spec: &Spec {
                attrs: &["sampling_percentage", "hash_salt"],
                blocks: &[],
            },
        },
        Nested {
            alloy: "ottl_condition",
            toml: "ottl_condition",
            repeated: false,
            spec: &Spec {
                attrs: &["error_mode", "span"],
                blocks: &[],
            },
        },
    ],
};
const REDACTION: Spec = Spec {
    attrs: &[
        "allow_all_keys",
        "allowed_keys",
        "ignored_keys",
        "blocked_key_patterns",
        "blocked_values",
        "allowed_values",
        "summary",
    ],
    blocks: &[],
};
const TAIL_SAMPLING: Spec = Spec {
    attrs: &["decision_wait", "num_traces", "expected_new_traces_per_sec"],
    blocks: &[Nested {
        alloy: "policy",
        toml: "policies",
        repeated: true,
        spec: &POLICY,
    }],
};

/// A size such as `512MiB`, `2GiB`, `1000000000` (bytes), in MiB (rounded down).
fn mib_of(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().ok()?;
    let bytes = match t[split..].trim() {
        "" | "B" => n,
        "KiB" => n << 10,
        "MiB" => n << 20,
        "GiB" => n << 30,
        "TiB" => n << 40,
        "KB" | "kB" => n * 1_000,
        "MB" => n * 1_000_000,
        "GB" => n * 1_000_000_000,
        _ => return None,
    };
    Some(bytes >> 20)
}

impl Mapper<'_> {
    /// Registers an in-line processor component and its node.
    pub(super) fn processor(
        &mut self,
        b: &EBlock,
        r: &Reader,
        ty: &'static str,
        body: Table,
    ) -> Result<Node, Error> {
        let outputs = self.outputs(r)?;
        let c = self.add_comp(b, "processors", ty, body);
        Ok(Node::Processor {
            name: self.comps[c].name.clone(),
            outputs,
        })
    }

    /// Copies a block by `spec` into `t`: attributes keep their names, single blocks become
    /// sub-tables, repeated blocks arrays of inline tables.
    fn spec_table(&mut self, r: &Reader, spec: &Spec, t: &mut Table) -> Result<(), Error> {
        for a in &r.b.attrs {
            if spec.attrs.contains(&a.name.as_str()) {
                let v = self.value_toml(r, a, &a.value)?;
                t.set(&a.name, v, r.origin(a));
            }
        }
        for nested in spec.blocks {
            let found = r.blocks(nested.alloy);
            if found.is_empty() {
                continue;
            }
            if nested.repeated {
                let mut items = Vec::new();
                for b in &found {
                    let child = r.child(b, nested.spec.attrs, &nested.spec.block_names())?;
                    items.push(self.spec_inline(&child, nested.spec)?);
                }
                t.set(
                    nested.toml,
                    format!("[{}]", items.join(", ")),
                    r.origin_of_block(found[0]),
                );
            } else {
                let Some(child) =
                    r.block(nested.alloy, nested.spec.attrs, &nested.spec.block_names())?
                else {
                    continue;
                };
                let sub = t.table(nested.toml, child.here());
                self.spec_table(&child, nested.spec, sub)?;
            }
        }
        Ok(())
    }

    /// A block as an inline TOML table, by `spec`.
    fn spec_inline(&mut self, r: &Reader, spec: &Spec) -> Result<String, Error> {
        let mut parts = Vec::new();
        for a in &r.b.attrs {
            let v = self.value_toml(r, a, &a.value)?;
            parts.push(format!("{} = {v}", toml_key(&a.name)));
        }
        for nested in spec.blocks {
            let found = r.blocks(nested.alloy);
            if found.is_empty() {
                continue;
            }
            let mut items = Vec::new();
            for b in &found {
                let child = r.child(b, nested.spec.attrs, &nested.spec.block_names())?;
                items.push(self.spec_inline(&child, nested.spec)?);
            }
            let v = if nested.repeated {
                format!("[{}]", items.join(", "))
            } else if items.len() == 1 {
                items.remove(0)
            } else {
                return Err(Error::at(
                    found[1].pos,
                    format!("{}.{}", r.key, nested.alloy),
                    format!(
                        "block `{}` may appear only once in {}",
                        nested.alloy, r.what
                    ),
                ));
            };
            parts.push(format!("{} = {v}", toml_key(nested.toml)));
        }
        Ok(format!("{{ {} }}", parts.join(", ")))
    }

    /// `otelcol.processor.batch` → the `batch` processor (the drivers' batching after the spool).
    pub(super) fn batch(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(
            b,
            id,
            &["timeout", "send_batch_size", "send_batch_max_size"],
            &["output"],
        )?;
        let mut body = Table::default();
        self.copy_strs(&mut body, &r, &["timeout"])?;
        for n in ["send_batch_size", "send_batch_max_size"] {
            if let Some(a) = r.attr(n) {
                body.set(n, r.int_of(a)?.to_string(), r.origin(a));
            }
        }
        let outputs = self.outputs(&r)?;
        let c = self.add_comp(b, "processors", "batch", body);
        Ok(Node::Batch {
            name: self.comps[c].name.clone(),
            outputs,
        })
    }

    /// `otelcol.processor.memory_limiter`: sizes become `limit_mib` / `spike_limit_mib`.
    pub(super) fn memory_limiter(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(
            b,
            id,
            &[
                "check_interval",
                "limit",
                "spike_limit",
                "limit_percentage",
                "spike_limit_percentage",
            ],
            &["output"],
        )?;
        let mut body = Table::default();
        let a = r.required("check_interval")?;
        self.set_str(&mut body, "check_interval", &r, a)?;
        for (from, to) in [("limit", "limit_mib"), ("spike_limit", "spike_limit_mib")] {
            if let Some(a) = r.attr(from) {
                let text = self.ev.resolve(&r.str_of(a)?, a.value_pos);
                let mib = mib_of(&text).ok_or_else(|| {
                    Error::at(
                        a.value_pos,
                        r.origin(a).key,
                        format!("{from} {text:?}: use a size such as \"512MiB\" or \"2GiB\""),
                    )
                })?;
                body.set(to, mib.to_string(), r.origin(a));
            }
        }
        for n in ["limit_percentage", "spike_limit_percentage"] {
            if let Some(a) = r.attr(n) {
                body.set(n, r.int_of(a)?.to_string(), r.origin(a));
            }
        }
        self.processor(b, &r, "memory_limiter", body)
    }

    /// `otelcol.processor.attributes`, `.filter`, `.transform`, `.tail_sampling`: copied by
    /// their `Spec`s onto the Sluice processors of the same names.
    pub(super) fn spec_processor(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let (ty, spec) = match b.name.as_str() {
            "otelcol.processor.attributes" => ("attributes", &ATTRIBUTES),
            "otelcol.processor.filter" => ("filter", &FILTER),
            "otelcol.processor.transform" => ("transform", &TRANSFORM),
            _ => ("tail_sampling", &TAIL_SAMPLING),
        };
        let mut blocks: Vec<&str> = spec.blocks.iter().map(|b| b.alloy).collect();
        blocks.push("output");
        let r = Reader::component(b, id, spec.attrs, &blocks)?;
        let mut body = Table::default();
        self.spec_table(&r, spec, &mut body)?;
        self.processor(b, &r, ty, body)
    }

    /// `otelcol.processor.redaction` → the `redaction` processor (same names), except
    /// `hash_function`: Alloy's functions are not Sluice's.
    pub(super) fn redaction(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let mut attrs = REDACTION.attrs.to_vec();
        attrs.push("hash_function");
        let r = Reader::component(b, id, &attrs, &["output"])?;
        if let Some(a) = r.attr("hash_function") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            if !v.is_empty() {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    format!(
                        "hash_function {v:?} is not supported by Sluice: its redaction processor masks with **** or hashes with SHA-256 (hash_function = \"sha256\" in Sluice TOML)"
                    ),
                ));
            }
        }
        let mut body = Table::default();
        self.spec_table(&r, &REDACTION, &mut body)?;
        self.processor(b, &r, "redaction", body)
    }
}
