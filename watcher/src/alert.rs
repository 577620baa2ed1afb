//! Alert webhook payloads: Grafana-managed (`version: "1"`) and Alertmanager (`version: "4"`)
//! share one shape, so one lenient struct reads both (unknown fields are ignored, Grafana's
//! extras are optional).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
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

/// Parses RFC 3339 (`2025-01-01T12:00:00.123Z`, `…+02:00`) to Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let ms3: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = ms3.parse().ok()?;
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let v = oh * 60 + om;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + frac_ms)
}

/// Formats Unix milliseconds as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's civil-calendar algorithms.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Current Unix time in ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in [
            "",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00",
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
