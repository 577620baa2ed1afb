//! Record and resource attributes as Alloy reads them: dotted lookups, hint lists and the
//! tenant hint.

use super::HINT_TENANT;
use crate::otlp::{AnyValue, KeyValue, any_value::Value};
use crate::value::{self, as_string, get, kind};

/// Record attributes as Alloy sees them after it adds the `level` attribute.
pub(super) struct RecordAttrs<'a> {
    pub(super) attrs: &'a [KeyValue<'a>],
    pub(super) synth_level: Option<KeyValue<'a>>,
}

impl<'a> RecordAttrs<'a> {
    pub(super) fn all(&self) -> impl Iterator<Item = &KeyValue<'a>> + Clone {
        self.attrs.iter().chain(self.synth_level.iter())
    }
}

pub(super) fn find<'a>(
    attrs: impl Iterator<Item = &'a KeyValue<'a>>,
    key: &str,
) -> Option<&'a KeyValue<'a>> {
    attrs.into_iter().find(|kv| kv.key == key)
}

/// `convertAttributesToLabels` lookup: the key as is, else a dotted path into map values.
pub(super) fn lookup<'a>(
    attrs: impl Iterator<Item = &'a KeyValue<'a>> + Clone,
    path: &str,
) -> Option<&'a KeyValue<'a>> {
    if let Some(kv) = find(attrs.clone(), path) {
        return Some(kv);
    }
    lookup_nested(attrs, path)
}

fn lookup_nested<'a>(
    attrs: impl Iterator<Item = &'a KeyValue<'a>>,
    path: &str,
) -> Option<&'a KeyValue<'a>> {
    let (left, right) = path.split_once('.').unwrap_or((path, ""));
    let kv = find(attrs, left)?;
    if right.is_empty() {
        return Some(kv);
    }
    match kind(kv.value.as_ref()) {
        Some(Value::KvlistValue(list)) => lookup_nested(list.values.iter(), right),
        _ => None,
    }
}

/// `parseAttributeNames`: a comma-separated string, an array, or any other value as text.
pub(super) fn hint_names(v: Option<&AnyValue>) -> Vec<String> {
    match kind(v) {
        Some(Value::StringValue(s)) => s.split(',').map(|n| n.trim().to_owned()).collect(),
        Some(Value::ArrayValue(arr)) => arr
            .values
            .iter()
            .map(|item| {
                let text = match kind(Some(item)) {
                    Some(Value::DoubleValue(f)) => value::go_float(*f),
                    _ => as_string(Some(item)).into_owned(),
                };
                text.trim().to_owned()
            })
            .collect(),
        _ => vec![as_string(v).trim().to_owned()],
    }
}

/// `GetTenantFromTenantHint`: the hint (resource first) names the attribute (resource first)
/// whose string value is the tenant.
pub(super) fn tenant_from_hint(res_attrs: &[KeyValue], rec_attrs: &[KeyValue]) -> Option<String> {
    let hint = get(res_attrs, HINT_TENANT).or_else(|| get(rec_attrs, HINT_TENANT))?;
    let Some(Value::StringValue(attr)) = kind(hint.value.as_ref()) else {
        return None;
    };
    let attr = *attr;
    let tenant_kv = get(res_attrs, attr).or_else(|| get(rec_attrs, attr))?;
    match kind(tenant_kv.value.as_ref()) {
        Some(Value::StringValue(t)) if !t.is_empty() => Some((*t).to_owned()),
        _ => None,
    }
}
