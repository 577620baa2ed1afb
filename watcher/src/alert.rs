//! Alert webhook payloads: Grafana-managed (`version: "1"`) and Alertmanager (`version: "4"`)
//! share one shape, so one lenient struct reads both (unknown fields are ignored, Grafana's
//! extras are optional).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_core::time;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookPayload {
    #[serde(default)]
    pub receiver: String,
    /// Group status; never used for decisions (each alert has its own).
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub alerts: Vec<Alert>,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub group_key: Option<String>,
    #[serde(default)]
    pub truncated_alerts: Option<u64>,
    // Grafana extras.
    #[serde(default)]
    pub org_id: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

impl WebhookPayload {
    /// Reads a webhook body (Grafana or Alertmanager JSON).
    pub fn from_json(raw: &[u8]) -> Result<WebhookPayload, serde_json::Error> {
        serde_json::from_slice(raw)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
    // Grafana extras.
    #[serde(
        default,
        rename = "silenceURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub silence_url: Option<String>,
    #[serde(
        default,
        rename = "dashboardURL",
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_string: Option<String>,
    #[serde(default, rename = "ruleUID", skip_serializing_if = "Option::is_none")]
    pub rule_uid: Option<String>,
}

/// Where an alert came from (which webhook path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    Grafana,
    Alertmanager,
}

impl AlertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Grafana => "grafana",
            AlertSource::Alertmanager => "alertmanager",
        }
    }
}

impl Alert {
    pub fn is_firing(&self) -> bool {
        self.status.eq_ignore_ascii_case("firing")
    }

    pub fn is_resolved(&self) -> bool {
        self.status.eq_ignore_ascii_case("resolved")
    }

    /// The contact-point "Test" button sends `alertname=TestAlert`, `instance=Grafana`: never act
    /// on it.
    pub fn is_test(&self) -> bool {
        self.labels.get("alertname").map(String::as_str) == Some("TestAlert")
            && (self.labels.get("instance").map(String::as_str) == Some("Grafana")
                || self.annotations.get("summary").map(String::as_str) == Some("Notification test"))
    }

    /// The label-set fingerprint the sender gave, or one computed from the labels.
    pub fn fingerprint(&self) -> String {
        if !self.fingerprint.is_empty() {
            return self.fingerprint.clone();
        }
        let mut h = Sha256::new();
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update([0xff]);
            h.update(v.as_bytes());
            h.update([0xfe]);
        }
        hex::encode(&h.finalize()[..8])
    }

    /// `startsAt` in Unix ms, when it parses.
    pub fn starts_at_ms(&self) -> Option<i64> {
        parse_rfc3339_ms(&self.starts_at)
    }

    /// The incident key: fingerprint + startsAt (the fingerprint alone merges episodes).
    pub fn incident_key(&self) -> String {
        let start = match self.starts_at_ms() {
            Some(ms) => ms.to_string(),
            None => self.starts_at.clone(),
        };
        format!("{}@{}", self.fingerprint(), start)
    }

    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A short stable id for an incident key (used in URLs).
pub fn incident_id(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

/// Parses an RFC 3339 date-time (`2025-01-01T12:00:00.123Z`, `…+02:00`; the forms
/// `sluice_core::time::parse_rfc3339` takes) to Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    time::parse_rfc3339(s).map(|t| t.as_millisecond())
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    time::format_rfc3339(time::from_unix_millis(ms), 3)
}

/// Current Unix time in ms, from the one clock (`sluice_core::time`).
pub fn now_ms() -> i64 {
    time::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `webhook` fuzz target (fuzz/regressions/webhook/float-roundtrip-values):
    /// an alert's `values` must read back from the store exactly as the webhook sent them.
    #[test]
    fn alert_values_read_back_exactly() {
        let body = br#"{"alerts": [{"values": {"A": 18858.888888e+300, "B": -0.0}}]}"#;
        let payload = WebhookPayload::from_json(body).unwrap();
        let alert = &payload.alerts[0];
        let stored = serde_json::to_vec(alert).unwrap();
        let back: Alert = serde_json::from_slice(&stored).unwrap();
        assert_eq!(&back, alert);
        let a = alert.values.as_ref().and_then(|v| v["A"].as_f64()).unwrap();
        assert_eq!(a, 1.8858888888e304);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms("2025-01-01T12:00:00.123456Z"),
            Some(1_735_732_800_123)
        );
        assert_eq!(
            parse_rfc3339_ms("2025-01-01T14:00:00+02:00"),
            Some(1_735_732_800_000)
        );
        assert!(parse_rfc3339_ms("0001-01-01T00:00:00Z").is_some());
        // No offset: UTC, the one rule every component follows.
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01"), Some(1000));
        for bad in [
            "",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "x".repeat(30).as_str(),
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
        assert_eq!(
            format_rfc3339_ms(1_735_732_800_123),
            "2025-01-01T12:00:00.123Z"
        );
        let t = 1_700_000_000_456;
        assert_eq!(parse_rfc3339_ms(&format_rfc3339_ms(t)), Some(t));
    }

    #[test]
    fn grafana_and_alertmanager_payloads_parse() {
        let grafana = r#"{"receiver":"watcher","status":"firing","orgId":1,"alerts":[{"status":"firing",
          "labels":{"alertname":"AwfAgentFailing","agent_id":"researcher"},"annotations":{"summary":"x"},
          "startsAt":"2025-01-01T12:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://g/a",
          "fingerprint":"abc123","silenceURL":"","dashboardURL":"","panelURL":"","values":{"B":4,"C":1},
          "valueString":"[ var='B' value=4 ]","enrichments":{}}],"groupLabels":{"alertname":"AwfAgentFailing"},
          "commonLabels":{},"commonAnnotations":{},"externalURL":"http://g/","version":"1",
          "groupKey":"{}:{alertname=\"AwfAgentFailing\"}","truncatedAlerts":0,"title":"t","state":"alerting","message":"m"}"#;
        let p: WebhookPayload = serde_json::from_str(grafana).unwrap();
        assert_eq!(p.alerts.len(), 1);
        assert_eq!(p.alerts[0].incident_key(), "abc123@1735732800000");
        let am = r#"{"version":"4","groupKey":"k","truncatedAlerts":0,"status":"resolved","receiver":"r",
          "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am",
          "notification_reason":"x","routeLabels":{},"alerts":[{"status":"resolved","labels":{"a":"b"},
          "annotations":{},"startsAt":"2025-01-01T12:00:00Z","endsAt":"2025-01-01T12:05:00Z",
          "generatorURL":"","fingerprint":"f1"}]}"#;
        let p: WebhookPayload = serde_json::from_str(am).unwrap();
        assert!(p.alerts[0].is_resolved());
        let no_fp = Alert {
            fingerprint: String::new(),
            ..p.alerts[0].clone()
        };
        assert_eq!(no_fp.fingerprint().len(), 16);
    }
}
