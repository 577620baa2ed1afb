//! Prometheus components: `prometheus.remote_write` (one exporter per endpoint),
//! `otelcol.exporter.prometheus` (whose options land on those exporters) and
//! `prometheus.scrape` (a `prometheus_scrape` receiver).

use super::graph::{Node, Target};
use super::reader::Reader;
use super::toml_out::{Table, toml_key, toml_string};
use super::{Mapper, Origin, quoted_id};
use crate::Error;
use crate::eval::{EBlock, Value};

impl Mapper<'_> {
    /// `otelcol.exporter.prometheus`: a converter in front of `prometheus.remote_write`.
    pub(super) fn prometheus_converter(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(
            b,
            id,
            &[
                "forward_to",
                "include_target_info",
                "include_scope_labels",
                "add_metric_suffixes",
            ],
            &[],
        )?;
        let forward = r.exports_of(r.required("forward_to")?)?;
        for n in [
            "include_target_info",
            "include_scope_labels",
            "add_metric_suffixes",
        ] {
            if let Some(a) = r.attr(n) {
                r.bool_of(a)?;
            }
        }
        Ok(Node::PromConverter { forward })
    }

    pub(super) fn remote_write(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let (r, endpoints) = Reader::writer(b, id, "prometheus.remote_write")?;
        let mut exporters = Vec::new();
        for e in endpoints {
            let ep = r.child(
                e,
                &[
                    "url",
                    "name",
                    "remote_timeout",
                    "headers",
                    "bearer_token",
                    "send_exemplars",
                    "send_native_histograms",
                ],
                &[
                    "basic_auth",
                    "tls_config",
                    "queue_config",
                    "metadata_config",
                ],
            )?;
            let mut body = Table::default();
            let mut notes = Vec::new();
            let url = ep.required("url")?;
            self.set_str(&mut body, "url", &ep, url)?;
            if let Some(a) = ep.attr("name") {
                ep.str_of(a)?;
            }
            Self::copy_bools(
                &mut body,
                &ep,
                &[
                    ("send_exemplars", "send_exemplars"),
                    ("send_native_histograms", "send_native_histograms"),
                ],
            )?;
            self.http_client(&mut body, &ep)?;
            if let Some(a) = r.attr("external_labels") {
                self.set_map(&mut body, "external_labels", &r, a)?;
            }
            if let Some(q) = ep.block(
                "queue_config",
                &[
                    "capacity",
                    "max_shards",
                    "min_shards",
                    "max_samples_per_send",
                    "batch_send_deadline",
                    "min_backoff",
                    "max_backoff",
                    "retry_on_http_429",
                    "sample_age_limit",
                ],
                &[],
            )? {
                if let Some(a) = q.attr("max_shards") {
                    body.set("shards", q.int_of(a)?.to_string(), q.origin(a));
                }
                let mut retry = Table::default();
                for (from, to) in [
                    ("min_backoff", "initial_interval"),
                    ("max_backoff", "max_interval"),
                ] {
                    if let Some(a) = q.attr(from) {
                        self.set_str(&mut retry, to, &q, a)?;
                    }
                }
                if let Some(a) = q.attr("sample_age_limit") {
                    let s = q.str_of(a)?;
                    if !matches!(s.literal().as_deref(), Some("0" | "0s")) {
                        let v = self.render(&s, a.value_pos);
                        retry.set("max_age", v, q.origin(a));
                    }
                }
                if !retry.is_empty() {
                    *body.table("retry", q.here()) = retry;
                }
                let mut ignored = Vec::new();
                for n in [
                    "capacity",
                    "min_shards",
                    "max_samples_per_send",
                    "batch_send_deadline",
                    "retry_on_http_429",
                ] {
                    if let Some(a) = q.attr(n) {
                        if n == "retry_on_http_429" {
                            q.bool_of(a)?;
                        } else if n == "batch_send_deadline" {
                            q.str_of(a)?;
                        } else {
                            q.int_of(a)?;
                        }
                        ignored.push(n);
                    }
                }
                if !ignored.is_empty() {
                    notes.push(format!(
                        "queue_config {}: not applicable; the disk spool queues and the pipeline's batch processor sizes requests",
                        ignored.join(", ")
                    ));
                }
            }
            if let Some(md) = ep.block(
                "metadata_config",
                &["send", "send_interval", "max_samples_per_send"],
                &[],
            )? {
                Self::copy_bools(&mut body, &md, &[("send", "send_metadata")])?;
                if md.attr("send_interval").is_some() || md.attr("max_samples_per_send").is_some() {
                    notes.push("metadata_config send_interval/max_samples_per_send: Sluice sends metadata with each request".into());
                }
            }
            let c = self.add_comp(b, "exporters", "prometheus_remote_write", body);
            self.comps[c].notes = notes;
            self.comps[c].origin = ep.here();
            self.comps[c].source = format!("{} > endpoint", quoted_id(b));
            exporters.push(c);
        }
        Ok(Node::RemoteWrite { exporters })
    }

    /// The remote-write exporters a `prometheus.scrape` forwards to (no processors: Alloy's
    /// Prometheus components go straight to `prometheus.remote_write`).
    pub(super) fn prometheus_routes(
        &self,
        t: &Target,
    ) -> Result<Vec<(Vec<String>, String)>, Error> {
        match self.node(t)? {
            Node::RemoteWrite { exporters } => Ok(exporters
                .iter()
                .map(|e| (Vec::new(), self.comps[*e].name.clone()))
                .collect()),
            _ => Err(Error::at(
                t.pos,
                t.component.clone(),
                format!(
                    "prometheus.scrape's forward_to takes prometheus.remote_write receivers; `{}` is not one",
                    t.component
                ),
            )),
        }
    }

    /// `prometheus.scrape` → a `prometheus_scrape` receiver. `targets` is a list of objects
    /// holding `__address__` and other labels; each becomes one `static_configs` entry.
    pub(super) fn scrape(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::new(
            b,
            id.to_string(),
            quoted_id(b),
            &[
                "targets",
                "forward_to",
                "job_name",
                "scrape_interval",
                "scrape_timeout",
                "metrics_path",
                "scheme",
                "honor_labels",
                "honor_timestamps",
                "bearer_token",
            ],
            &["basic_auth"],
        )?;
        let mut body = Table::default();
        let targets = r.required("targets")?;
        let Value::Array(items) = &targets.value else {
            return Err(r.type_error(
                targets,
                "a list of objects, e.g. [{\"__address__\" = \"localhost:9100\"}]",
            ));
        };
        let mut groups = Vec::new();
        for item in items {
            let Value::Object(fields) = item else {
                return Err(r.type_error(targets, "a list of objects with `__address__`"));
            };
            let mut address = None;
            let mut labels = Vec::new();
            for (k, v) in fields {
                let Value::Str(text) = v else {
                    return Err(r.type_error(targets, "objects of string values"));
                };
                let rendered = self.render(text, targets.value_pos);
                if k == "__address__" {
                    address = Some(rendered);
                } else {
                    labels.push(format!("{} = {rendered}", toml_key(k)));
                }
            }
            let address = address.ok_or_else(|| {
                Error::at(
                    targets.value_pos,
                    format!("{id}.targets"),
                    "every target needs `__address__` (host:port)",
                )
            })?;
            groups.push(format!(
                "{{ targets = [{address}], labels = {{ {} }} }}",
                labels.join(", ")
            ));
        }
        body.set(
            "static_configs",
            format!("[{}]", groups.join(", ")),
            r.origin(targets),
        );
        let forward = r.exports_of(r.required("forward_to")?)?;
        match r.attr("job_name") {
            Some(a) => self.set_str(&mut body, "job_name", &r, a)?,
            // Alloy's default job label is the component's name.
            None => body.set("job_name", toml_string(id), r.here()),
        }
        self.copy_strs(
            &mut body,
            &r,
            &[
                "scrape_interval",
                "scrape_timeout",
                "metrics_path",
                "scheme",
                "bearer_token",
            ],
        )?;
        Self::copy_bools(
            &mut body,
            &r,
            &[
                ("honor_labels", "honor_labels"),
                ("honor_timestamps", "honor_timestamps"),
            ],
        )?;
        if let Some(ba) = r.block("basic_auth", &["username", "password"], &[])? {
            let t = body.table("basic_auth", ba.here());
            self.copy_strs(t, &ba, &["username", "password"])?;
        }
        let c = self.add_comp(b, "receivers", "prometheus_scrape", body);
        Ok(Node::PromReceiver {
            name: self.comps[c].name.clone(),
            forward,
            pos: b.pos,
            key: id.to_string(),
        })
    }

    /// Options of `otelcol.exporter.prometheus` land on the remote-write exporters it feeds.
    pub(super) fn apply_converter_options(&mut self) -> Result<(), Error> {
        for id in self.order.clone() {
            let Some(Node::PromConverter { forward }) = self.nodes.get(&id) else {
                continue;
            };
            let Some(b) = self.blocks.get(&id) else {
                continue;
            };
            let mut targets = Vec::new();
            for f in forward {
                match self.node(f)? {
                    Node::RemoteWrite { exporters } => targets.extend(exporters.iter().copied()),
                    _ => {
                        return Err(Error::at(
                            f.pos,
                            f.component.clone(),
                            format!(
                                "{id}'s forward_to takes prometheus.remote_write receivers; `{}` is not one",
                                f.component
                            ),
                        ));
                    }
                }
            }
            for a in &b.attrs {
                let Value::Bool(v) = a.value else { continue };
                for c in &targets {
                    let comp = &mut self.comps[*c];
                    if let Some((_, prev, from)) =
                        comp.applied.iter().find(|(k, _, _)| *k == a.name)
                        && *prev != v.to_string()
                    {
                        return Err(Error::at(
                            a.pos,
                            format!("{id}.{}", a.name),
                            format!(
                                "{} is fed by {from} with {} = {prev} and by {id} with {v}; Sluice applies one setting per remote_write endpoint",
                                comp.source, a.name
                            ),
                        ));
                    }
                    comp.applied
                        .push((a.name.clone(), v.to_string(), id.clone()));
                    comp.body.set(
                        &a.name,
                        v.to_string(),
                        Origin {
                            pos: a.pos,
                            key: format!("{id}.{}", a.name),
                        },
                    );
                }
            }
        }
        Ok(())
    }
}
