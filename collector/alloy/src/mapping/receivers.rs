//! `otelcol.receiver.otlp` → the `otlp` receiver.

use super::Mapper;
use super::graph::Node;
use super::reader::Reader;
use super::toml_out::Table;
use crate::Error;
use crate::eval::EBlock;

impl Mapper<'_> {
    /// `otelcol.receiver.otlp`: its `grpc` / `http` servers and its outputs.
    pub(super) fn otlp_receiver(&mut self, b: &EBlock, id: &str) -> Result<Node, Error> {
        let r = Reader::component(b, id, &[], &["grpc", "http", "output"])?;
        let mut body = Table::default();
        if let Some(g) = r.block("grpc", &["endpoint", "max_recv_msg_size"], &[])? {
            let t = body.table("grpc", g.here());
            self.copy_strs(t, &g, &["endpoint", "max_recv_msg_size"])?;
        }
        if let Some(h) = r.block("http", &["endpoint", "max_request_body_size"], &[])? {
            let t = body.table("http", h.here());
            self.copy_strs(t, &h, &["endpoint", "max_request_body_size"])?;
        }
        if body.is_empty() {
            return Err(Error::at(
                b.pos,
                id.to_string(),
                "otelcol.receiver.otlp needs a `grpc { }` or an `http { }` block (an empty block listens on the default port)",
            ));
        }
        let outputs = self.outputs(&r)?;
        let c = self.add_comp(b, "receivers", "otlp", body);
        Ok(Node::Receiver {
            name: self.comps[c].name.clone(),
            outputs,
        })
    }
}
