//! `otelcol.exporter.otlp` / `.otlphttp` / `.debug` and the `otelcol.auth.*` extensions
//! they reference, plus the HTTP client settings shared by the remote-write and Loki exporters.

use super::graph::Node;
use super::reader::Reader;
use super::toml_out::{Table, toml_float, toml_string};
use super::{Mapper, quoted_id};
use crate::Error;
use crate::eval::{EBlock, Piece, Str, Value};
use base64::Engine;

impl Mapper<'_> {
    /// `otelcol.auth.basic`: a precomputed `Basic` Authorization header.
    pub(super) fn auth_basic(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(b, id, &["username", "password"], &[])?;
        let user = r.required("username")?;
        let pass = r.required("password")?;
        let u = self.ev.resolve(&r.str_of(user)?, user.value_pos);
        let p = self.ev.resolve(&r.str_of(pass)?, pass.value_pos);
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        Ok(Node::Auth {
            header: Str::lit(format!("Basic {token}")),
        })
    }

    /// `otelcol.auth.bearer`: `scheme token` as the Authorization header.
    pub(super) fn auth_bearer(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(b, id, &["token", "scheme"], &[])?;
        let token = r.str_of(r.required("token")?)?;
        let scheme = match r.attr("scheme") {
            Some(a) => r.str_of(a)?,
            None => Str::lit("Bearer"),
        };
        let mut header = scheme;
        if header.literal().is_none_or(|s| !s.is_empty()) {
            header.0.push(Piece::Lit(" ".into()));
        }
        header.0.extend(token.0);
        Ok(Node::Auth { header })
    }

    /// `otelcol.exporter.debug` → the `debug` exporter.
    pub(super) fn debug_exporter(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(b, id, &["verbosity"], &[])?;
        let mut body = Table::default();
        if let Some(a) = r.attr("verbosity") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            let mapped = match v.as_str() {
                "basic" | "normal" => "basic",
                "detailed" => "detailed",
                _ => {
                    return Err(Error::at(
                        a.value_pos,
                        r.origin(a).key,
                        format!("verbosity {v:?}: use basic, normal or detailed"),
                    ));
                }
            };
            body.set("verbosity", toml_string(mapped), r.origin(a));
        }
        let c = self.add_comp(b, "exporters", "debug", body);
        Ok(Node::Exporter {
            name: self.comps[c].name.clone(),
        })
    }

    pub(super) fn otlp_exporter(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let http = b.name == "otelcol.exporter.otlphttp";
        let top_attrs: &[&str] = if http {
            &["timeout", "encoding"]
        } else {
            &["timeout"]
        };
        let r = Reader::new(
            b,
            id.to_string(),
            quoted_id(b),
            top_attrs,
            &["client", "retry_on_failure", "sending_queue"],
        )?;
        let mut body = Table::default();
        let mut notes = Vec::new();
        let Some(client) = r.block(
            "client",
            &["endpoint", "compression", "headers", "auth"],
            &["tls"],
        )?
        else {
            return Err(Error::at(
                b.pos,
                format!("{id}.client"),
                format!("{} needs a `client {{ endpoint = ... }}` block", r.what),
            ));
        };
        let tls = client.block(
            "tls",
            &[
                "insecure",
                "insecure_skip_verify",
                "ca_file",
                "cert_file",
                "key_file",
                "server_name",
            ],
            &[],
        )?;
        let insecure = match tls.as_ref().and_then(|t| t.attr("insecure")) {
            Some(a) => tls.as_ref().map_or(Ok(false), |t| t.bool_of(a))?,
            None => false,
        };
        let ep_attr = client.required("endpoint")?;
        let mut endpoint = client.str_of(ep_attr)?;
        let lit = endpoint.literal();
        let has_scheme = lit.as_deref().is_some_and(|l| l.contains("://"));
        if http {
            if lit.is_some() && !has_scheme {
                return Err(Error::at(
                    ep_attr.value_pos,
                    client.origin(ep_attr).key,
                    "otelcol.exporter.otlphttp's endpoint is a URL with a scheme, e.g. \"http://tempo:4318\"",
                ));
            }
        } else if !has_scheme {
            // Alloy's gRPC endpoint is host:port; TLS is on unless tls { insecure = true }.
            let scheme = if insecure { "http://" } else { "https://" };
            endpoint.0.insert(0, Piece::Lit(scheme.into()));
        }
        let rendered = self.render(&endpoint, ep_attr.value_pos);
        body.set("endpoint", rendered, client.origin(ep_attr));
        if http {
            body.set("protocol", toml_string("http"), r.here());
        }
        if let Some(a) = r.attr("encoding") {
            let v = self.ev.resolve(&r.str_of(a)?, a.value_pos);
            if v != "proto" {
                return Err(Error::at(
                    a.value_pos,
                    r.origin(a).key,
                    format!(
                        "encoding {v:?}: Sluice's OTLP/HTTP exporter sends protobuf only (\"proto\")"
                    ),
                ));
            }
        }
        if let Some(a) = client.attr("compression") {
            let v = self.ev.resolve(&client.str_of(a)?, a.value_pos);
            let mapped = match v.as_str() {
                "gzip" => "gzip",
                "none" | "" => "none",
                _ => {
                    return Err(Error::at(
                        a.value_pos,
                        client.origin(a).key,
                        format!(
                            "compression {v:?} is not supported by Sluice; supported: gzip, none"
                        ),
                    ));
                }
            };
            body.set("compression", toml_string(mapped), client.origin(a));
        }
        self.copy_strs(&mut body, &r, &["timeout"])?;
        if let Some(a) = client.attr("headers") {
            self.set_map(&mut body, "headers", &client, a)?;
        }
        if let Some(a) = client.attr("auth") {
            let handler = match &a.value {
                Value::Export { component, export } if export == "handler" => component.clone(),
                _ => {
                    return Err(client.type_error(
                        a,
                        "an authentication handler, e.g. otelcol.auth.basic.creds.handler",
                    ));
                }
            };
            let Some(Node::Auth { header }) = self.nodes.get(&handler) else {
                return Err(Error::at(
                    a.value_pos,
                    client.origin(a).key,
                    format!(
                        "`{handler}` is not an otelcol.auth.basic or otelcol.auth.bearer component"
                    ),
                ));
            };
            let header = header.clone();
            let v = self.render(&header, a.value_pos);
            let headers = body.table("headers", client.origin(a));
            if headers.has_key_ignore_case("authorization") {
                return Err(Error::at(
                    a.pos,
                    client.origin(a).key,
                    "both `auth` and an Authorization header are set; keep one",
                ));
            }
            headers.set("Authorization", v, client.origin(a));
        }
        if let Some(t) = &tls {
            let files = ["ca_file", "cert_file", "key_file", "server_name"];
            let mut tt = Table::default();
            self.copy_strs(&mut tt, t, &files)?;
            Self::copy_bools(
                &mut tt,
                t,
                &[("insecure_skip_verify", "insecure_skip_verify")],
            )?;
            if insecure && !tt.is_empty() {
                return Err(Error::at(
                    t.b.pos,
                    t.key.clone(),
                    "tls: `insecure = true` turns TLS off; the other tls settings cannot apply",
                ));
            }
            if !tt.is_empty() {
                *body.table("tls", t.here()) = tt;
            }
        }
        if let Some(rt) = r.block(
            "retry_on_failure",
            &[
                "enabled",
                "initial_interval",
                "max_interval",
                "max_elapsed_time",
                "multiplier",
                "randomization_factor",
            ],
            &[],
        )? {
            self.retry(&mut body, &rt)?;
        }
        if let Some(q) = r.block(
            "sending_queue",
            &["enabled", "num_consumers", "queue_size"],
            &[],
        )? {
            for n in ["num_consumers", "queue_size"] {
                if let Some(a) = q.attr(n) {
                    q.int_of(a)?;
                }
            }
            if let Some(a) = q.attr("enabled") {
                q.bool_of(a)?;
            }
            notes.push("sending_queue: Sluice queues in the pipeline's disk spool instead ([pipelines.spool])".to_string());
        }
        let c = self.add_comp(b, "exporters", "otlp", body);
        self.comps[c].notes = notes;
        Ok(Node::Exporter {
            name: self.comps[c].name.clone(),
        })
    }

    pub(super) fn retry(&mut self, body: &mut Table, rt: &Reader) -> Result<(), Error> {
        if let Some(a) = rt.attr("enabled")
            && !rt.bool_of(a)?
        {
            return Err(Error::at(
                a.value_pos,
                rt.origin(a).key,
                "Sluice always retries what it has acknowledged (it is in the spool); to bound retries set max_elapsed_time",
            ));
        }
        let t = body.table("retry", rt.here());
        self.copy_strs(t, rt, &["initial_interval", "max_interval"])?;
        for n in ["multiplier", "randomization_factor"] {
            if let Some(a) = rt.attr(n) {
                t.set(n, toml_float(rt.float_of(a)?), rt.origin(a));
            }
        }
        if let Some(a) = rt.attr("max_elapsed_time") {
            let s = rt.str_of(a)?;
            if !matches!(s.literal().as_deref(), Some("0" | "0s")) {
                let v = self.render(&s, a.value_pos);
                t.set("max_age", v, rt.origin(a));
            }
        }
        Ok(())
    }

    /// `basic_auth`, `bearer_token`, `tls_config`, `headers`, `remote_timeout` of an endpoint.
    pub(super) fn http_client(&mut self, body: &mut Table, ep: &Reader) -> Result<(), Error> {
        if let Some(a) = ep.attr("headers") {
            // Sluice's remote-write and Loki exporters take the tenant as `tenant_id`.
            for (k, v) in ep.map_of(a)? {
                let rendered = self.render(&v, a.value_pos);
                if k.eq_ignore_ascii_case("x-scope-orgid") {
                    body.set("tenant_id", rendered, ep.origin(a));
                } else {
                    body.table("headers", ep.origin(a))
                        .set(&k, rendered, ep.origin(a));
                }
            }
        }
        if let Some(a) = ep.attr("remote_timeout") {
            self.set_str(body, "timeout", ep, a)?;
        }
        if let Some(a) = ep.attr("bearer_token") {
            self.set_str(body, "bearer_token", ep, a)?;
        }
        if let Some(ba) = ep.block("basic_auth", &["username", "password"], &[])? {
            let user = ba.required("username")?;
            let pass = ba.required("password")?;
            let t = body.table("basic_auth", ba.here());
            self.set_str(t, "username", &ba, user)?;
            self.set_str(t, "password", &ba, pass)?;
        }
        if let Some(tc) = ep.block(
            "tls_config",
            &["ca_file", "cert_file", "key_file", "insecure_skip_verify"],
            &[],
        )? {
            let t = body.table("tls", tc.here());
            self.copy_strs(t, &tc, &["ca_file", "cert_file", "key_file"])?;
            Self::copy_bools(t, &tc, &[("insecure_skip_verify", "insecure_skip_verify")])?;
        }
        Ok(())
    }
}
