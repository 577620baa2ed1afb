//! `resource`: the attributes processor's actions (insert, update, upsert, delete, hash,
//! extract, convert) on resource attributes, as the OpenTelemetry Collector's resource
//! processor runs them.

use crate::attributes::{Action, ActionConfig, apply, compile_actions};
use crate::{BuildError, Context, Request, RequestProcessor, Stage};
use serde::Deserialize;
use sluice_core::{InvalidConfig, Refusal};
use std::sync::Arc;

pub const TYPE_NAME: &str = "resource";

/// Config of the `resource` processor (its action list is called `attributes`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub attributes: Vec<ActionConfig>,
}

impl Config {
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        compile_actions("attributes", &self.attributes).map(|_| ())
    }
}

impl sluice_core::ComponentConfig for Config {}

pub struct ResourceProcessor {
    actions: Vec<Action>,
}

pub fn build(config: &Config, _ctx: Context) -> Result<Stage, BuildError> {
    Ok(Stage::Request(Arc::new(ResourceProcessor {
        actions: compile_actions("attributes", &config.attributes)?,
    })))
}

impl RequestProcessor for ResourceProcessor {
    fn process(&self, request: &mut Request) -> Result<(), Refusal> {
        for attrs in request.resource_attributes_mut() {
            apply(&self.actions, attrs);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    #[test]
    fn acts_on_resource_attributes_only() {
        let cfg: Config = toml::from_str(
            r#"
            [[attributes]]
            key = "deployment.environment"
            value = "prod"
            action = "upsert"
            [[attributes]]
            key = "host.name"
            action = "delete"
            "#,
        )
        .unwrap();
        let Stage::Request(p) = build(&cfg, Context::new("processors.r", "p")).unwrap() else {
            panic!("resource works on decoded requests")
        };
        let mut r = Request::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans::default(), ResourceSpans::default()],
        });
        for attrs in r.resource_attributes_mut() {
            data::upsert(attrs, "host.name", data::string_value("h1"));
        }
        p.process(&mut r).unwrap();
        let Request::Traces(t) = r else { panic!() };
        for rs in &t.resource_spans {
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            assert_eq!(attrs.len(), 1);
            assert_eq!(
                data::get(attrs, "deployment.environment"),
                Some(&data::string_value("prod"))
            );
        }
    }
}
