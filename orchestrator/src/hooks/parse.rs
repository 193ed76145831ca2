//! Each source's verified body turned into the alerts niledr reasons about: a fingerprint
//! (the dedupe key), firing / resolved / ignored, the labels matchers see, a name and a
//! summary. A body that is not the source's format is a 400 that says what is wrong.

use std::collections::BTreeMap;

use niledr_web::types::{AlertmanagerPayload, GenericHookPayload, PagerDutyWebhook};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertStatus {
    Firing,
    Resolved,
    /// An event that neither opens nor ends an alert (PagerDuty's acknowledged, annotated…).
    Ignored,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
            AlertStatus::Ignored => "ignored",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Incoming {
    pub fingerprint: String,
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    pub name: String,
    pub summary: String,
}

/// Alerts a single call may carry (Alertmanager's `max_alerts` can bound a group below it).
pub const MAX_ALERTS: usize = 1000;

fn status(s: &str, what: &str) -> Result<AlertStatus, String> {
    match s {
        "firing" => Ok(AlertStatus::Firing),
        "resolved" => Ok(AlertStatus::Resolved),
        other => Err(format!(
            "{what} status must be \"firing\" or \"resolved\", got {other:?}"
        )),
    }
}

fn summary(annotations: &BTreeMap<String, String>) -> String {
    ["summary", "description", "message"]
        .iter()
        .find_map(|k| annotations.get(*k))
        .cloned()
        .unwrap_or_default()
}

/// One alert of the label-based formats (Alertmanager, generic): its name is its `alertname`.
fn incoming(
    status_word: &str,
    fingerprint: String,
    labels: BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<Incoming, String> {
    Ok(Incoming {
        status: status(status_word, "alert")?,
        name: labels.get("alertname").cloned().unwrap_or_default(),
        summary: summary(annotations),
        fingerprint,
        labels,
    })
}

fn checked(alerts: Vec<Incoming>) -> Result<Vec<Incoming>, String> {
    if alerts.len() > MAX_ALERTS {
        return Err(format!(
            "{} alerts in one call; at most {MAX_ALERTS} (set max_alerts in the webhook_config)",
            alerts.len()
        ));
    }
    if let Some(a) = alerts.iter().find(|a| a.fingerprint.trim().is_empty()) {
        return Err(format!("alert {:?} has no fingerprint", a.name));
    }
    Ok(alerts)
}

/// Alertmanager's webhook payload, version 4.
pub fn alertmanager(body: &[u8]) -> Result<Vec<Incoming>, String> {
    let p: AlertmanagerPayload = serde_json::from_slice(body)
        .map_err(|e| format!("not an Alertmanager webhook payload: {e}"))?;
    if p.version != "4" {
        return Err(format!(
            "Alertmanager webhook payload version {:?}; niledr reads version \"4\"",
            p.version
        ));
    }
    let alerts = p
        .alerts
        .into_iter()
        .map(|a| incoming(&a.status, a.fingerprint, a.labels, &a.annotations));
    checked(alerts.collect::<Result<_, _>>()?)
}

/// A PagerDuty v3 delivery: its event id and time (for the replay check) and the incident
/// as one alert whose fingerprint is the incident id.
#[derive(Debug)]
pub struct PagerDutyDelivery {
    pub event_id: String,
    pub occurred_at: jiff::Timestamp,
    pub alerts: Vec<Incoming>,
}

pub fn pagerduty(body: &[u8]) -> Result<PagerDutyDelivery, String> {
    let w: PagerDutyWebhook =
        serde_json::from_slice(body).map_err(|e| format!("not a PagerDuty v3 webhook: {e}"))?;
    let e = w.event;
    if e.id.trim().is_empty() {
        return Err("event.id is empty".into());
    }
    let occurred_at: jiff::Timestamp = e.occurred_at.parse().map_err(|err| {
        format!(
            "event.occurred_at {:?} is not an ISO 8601 time: {err}",
            e.occurred_at
        )
    })?;
    let d = &e.data;
    let incident = if d.kind == "incident" {
        d.id.clone()
    } else {
        d.incident
            .as_ref()
            .map(|i| i.id.clone())
            .unwrap_or_default()
    };
    let st = match e.event_type.as_str() {
        "incident.triggered" | "incident.reopened" => AlertStatus::Firing,
        "incident.resolved" => AlertStatus::Resolved,
        _ => AlertStatus::Ignored,
    };
    let mut labels = BTreeMap::new();
    let mut put = |k: &str, v: Option<&String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            labels.insert(k.to_string(), v.clone());
        }
    };
    put("event_type", Some(&e.event_type));
    put("title", d.title.as_ref());
    put("status", d.status.as_ref());
    put("urgency", d.urgency.as_ref());
    put("incident_key", d.incident_key.as_ref());
    put(
        "service",
        d.service.as_ref().and_then(|s| s.summary.as_ref()),
    );
    put("service_id", d.service.as_ref().map(|s| &s.id));
    put(
        "priority",
        d.priority.as_ref().and_then(|p| p.summary.as_ref()),
    );
    let alerts = if incident.is_empty() {
        // Not about an incident (nothing niledr maps): answered, audited, ignored.
        Vec::new()
    } else {
        vec![Incoming {
            fingerprint: format!("incident:{incident}"),
            status: st,
            name: d.title.clone().unwrap_or_else(|| incident.clone()),
            summary: d.html_url.clone().unwrap_or_default(),
            labels,
        }]
    };
    Ok(PagerDutyDelivery {
        event_id: e.id,
        occurred_at,
        alerts: checked(alerts)?,
    })
}

/// The generic hook's `{"alerts": [{fingerprint, status, labels, annotations}]}`.
pub fn generic(body: &[u8]) -> Result<Vec<Incoming>, String> {
    let p: GenericHookPayload =
        serde_json::from_slice(body).map_err(|e| format!("not a generic hook payload: {e}"))?;
    let alerts = p
        .alerts
        .into_iter()
        .map(|a| incoming(&a.status, a.fingerprint, a.labels, &a.annotations));
    checked(alerts.collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_v4() {
        let body = br#"{"version":"4","groupKey":"{}:{alertname=\"PostgresDown\"}","truncatedAlerts":0,
            "status":"firing","receiver":"niledr","groupLabels":{"alertname":"PostgresDown"},
            "commonLabels":{},"commonAnnotations":{},"externalURL":"http://am:9093",
            "alerts":[{"status":"firing","labels":{"alertname":"PostgresDown","site":"khartoum"},
            "annotations":{"summary":"primary gone"},"startsAt":"2026-12-01T10:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","generatorURL":"http://prom/graph","fingerprint":"a1b2"}]}"#;
        let a = alertmanager(body).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].fingerprint, "a1b2");
        assert_eq!(a[0].status, AlertStatus::Firing);
        assert_eq!(a[0].name, "PostgresDown");
        assert_eq!(a[0].summary, "primary gone");
        assert_eq!(a[0].labels["site"], "khartoum");
        let v3 = String::from_utf8_lossy(body).replace("\"version\":\"4\"", "\"version\":\"3\"");
        assert!(
            alertmanager(v3.as_bytes())
                .unwrap_err()
                .contains("version \"3\"")
        );
        let bad = String::from_utf8_lossy(body).replace(
            "\"status\":\"firing\",\"labels\"",
            "\"status\":\"burning\",\"labels\"",
        );
        assert!(
            alertmanager(bad.as_bytes())
                .unwrap_err()
                .contains("burning")
        );
        let nofp = String::from_utf8_lossy(body)
            .replace("\"fingerprint\":\"a1b2\"", "\"fingerprint\":\"\"");
        assert!(
            alertmanager(nofp.as_bytes())
                .unwrap_err()
                .contains("no fingerprint")
        );
        assert!(alertmanager(b"{}").is_err());
    }

    #[test]
    fn pagerduty_incident_events() {
        let body = |ty: &str| {
            format!(
                r#"{{"event":{{"id":"ev-1","event_type":"{ty}","resource_type":"incident",
                "occurred_at":"2026-12-01T10:00:00.169Z","agent":null,"client":null,
                "data":{{"id":"PGR0VU2","type":"incident","status":"triggered","title":"Khartoum DB down",
                "html_url":"https://acme.pagerduty.com/incidents/PGR0VU2","urgency":"high",
                "service":{{"id":"PF9KMXH","summary":"NileCare DB","type":"service_reference"}},
                "priority":{{"id":"P1X","summary":"P1"}}}}}}}}"#
            )
        };
        let d = pagerduty(body("incident.triggered").as_bytes()).unwrap();
        assert_eq!(d.event_id, "ev-1");
        assert_eq!(d.occurred_at.to_string(), "2026-12-01T10:00:00.169Z");
        assert_eq!(d.alerts[0].fingerprint, "incident:PGR0VU2");
        assert_eq!(d.alerts[0].status, AlertStatus::Firing);
        assert_eq!(d.alerts[0].labels["service"], "NileCare DB");
        assert_eq!(d.alerts[0].labels["priority"], "P1");
        assert_eq!(d.alerts[0].labels["event_type"], "incident.triggered");
        let r = pagerduty(body("incident.resolved").as_bytes()).unwrap();
        assert_eq!(r.alerts[0].status, AlertStatus::Resolved);
        let ack = pagerduty(body("incident.acknowledged").as_bytes()).unwrap();
        assert_eq!(ack.alerts[0].status, AlertStatus::Ignored);
        let bad_time = body("incident.triggered").replace("2026-12-01T10:00:00.169Z", "soon");
        assert!(
            pagerduty(bad_time.as_bytes())
                .unwrap_err()
                .contains("occurred_at")
        );
    }

    #[test]
    fn generic_payload_is_strict() {
        let ok =
            br#"{"alerts":[{"fingerprint":"f1","status":"resolved","labels":{"alertname":"X"}}]}"#;
        let a = generic(ok).unwrap();
        assert_eq!(
            (a[0].status, a[0].name.as_str()),
            (AlertStatus::Resolved, "X")
        );
        assert!(
            generic(br#"{"alerts":[{"fingerprint":"f1","status":"firing","lables":{}}]}"#).is_err()
        );
        assert!(generic(br#"{"alerts":[{"fingerprint":"f1","status":"up"}]}"#).is_err());
    }
}
