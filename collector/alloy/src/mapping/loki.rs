//! Loki components: `loki.write` (one exporter per endpoint) and `otelcol.exporter.loki`.

use super::graph::Node;
use super::reader::Reader;
use super::toml_out::Table;
use super::{Mapper, quoted_id};
use crate::Error;
use crate::eval::EBlock;

impl Mapper<'_> {
    /// `otelcol.exporter.loki`: a converter in front of `loki.write`.
    pub(super) fn loki_converter(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(b, id, &["forward_to"], &[])?;
        let forward = r.exports_of(r.required("forward_to")?)?;
        Ok(Node::LokiConverter { forward })
    }

    pub(super) fn loki_write(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let (r, endpoints) = Reader::writer(b, id, "loki.write")?;
        let mut exporters = Vec::new();
        for e in endpoints {
            let ep = r.child(
                e,
                &[
                    "url",
                    "name",
                    "tenant_id",
                    "headers",
                    "bearer_token",
                    "remote_timeout",
                ],
                &["basic_auth", "tls_config"],
            )?;
            let mut body = Table::default();
            let url = ep.required("url")?;
            self.set_str(&mut body, "url", &ep, url)?;
            if let Some(a) = ep.attr("name") {
                ep.str_of(a)?;
            }
            self.copy_strs(&mut body, &ep, &["tenant_id"])?;
            self.http_client(&mut body, &ep)?;
            if let Some(a) = r.attr("external_labels") {
                self.set_map(&mut body, "external_labels", &r, a)?;
            }
            let c = self.add_comp(b, "exporters", "loki", body);
            self.comps[c].origin = ep.here();
            self.comps[c].source = format!("{} > endpoint", quoted_id(b));
            exporters.push(c);
        }
        Ok(Node::LokiWrite { exporters })
    }
}
