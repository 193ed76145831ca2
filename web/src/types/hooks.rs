//! Wire types of the pager hooks: the payloads Alertmanager (webhook v4), PagerDuty (v3
//! webhooks) and the generic signed hook send, what a hook call answers, and the alert
//! evidence a service view carries. Field names here are those senders' contracts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Alertmanager's `webhook_config` payload, version 4.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    /// Always `"4"` for this format.
    pub version: String,
    pub group_key: String,
    /// Alerts left out because of `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` or `resolved` (the group's).
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<AlertmanagerAlert>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerAlert {
    /// `firing` or `resolved`.
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// A PagerDuty v3 webhook delivery: one event.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PagerDutyWebhook {
    pub event: PagerDutyEvent,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PagerDutyEvent {
    pub id: String,
    /// e.g. `incident.triggered`, `incident.resolved`, `incident.acknowledged`.
    pub event_type: String,
    pub resource_type: String,
    /// RFC 3339; the replay window is measured from it.
    pub occurred_at: String,
    #[serde(default)]
    pub data: PagerDutyEventData,
}

/// The part of `event.data` niledr reads (an `incident`; other data types leave it empty).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct PagerDutyEventData {
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    #[serde(default)]
    pub incident_key: Option<String>,
    #[serde(default)]
    pub urgency: Option<String>,
    #[serde(default)]
    pub service: Option<PagerDutyReference>,
    #[serde(default)]
    pub priority: Option<PagerDutyReference>,
    /// For `incident_note` and other data types: the incident they belong to.
    #[serde(default)]
    pub incident: Option<PagerDutyReference>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, utoipa::ToSchema)]
pub struct PagerDutyReference {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub summary: Option<String>,
}

/// `POST /api/v1/hooks/generic`: alerts from any tool that can sign its body
/// (`X-Niledr-Timestamp`, `X-Niledr-Signature: sha256=<hex>`; see docs/hooks.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericHookPayload {
    pub alerts: Vec<GenericAlert>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GenericAlert {
    /// Stable for one alert across its firing and resolved messages (the dedupe key).
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What a hook call did with each alert it carried.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct HookAnswerView {
    /// `alertmanager`, `pagerduty` or `generic`.
    pub source: String,
    pub alerts: Vec<HookAlertResultView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct HookAlertResultView {
    pub fingerprint: String,
    /// `firing`, `resolved` or `ignored` (an event that says neither).
    pub status: String,
    /// The `[[hooks.matchers]]` entry that matched, if any.
    pub matcher: Option<String>,
    pub service: Option<String>,
    pub runbook: Option<String>,
    /// `proposed`, `attached` (to an execution already open for the runbook), `duplicate`
    /// (this outage was already handled), `annotated` (resolved: noted, nothing cancelled),
    /// `quiet` (evidence only: a drill runs, triggers are paused, or the service was failed
    /// over from), `refused` (the proposal could not be opened; see `detail`), `unmatched`,
    /// `ignored`.
    pub outcome: String,
    pub execution: Option<String>,
    pub detail: String,
}

/// A firing alert held as evidence on a service (`ServiceView::alerts`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct AlertEvidenceView {
    pub source: String,
    pub fingerprint: String,
    /// `alertname` (Alertmanager), the incident title (PagerDuty), or the `alertname` label.
    pub name: String,
    pub summary: String,
    pub matcher: String,
    pub runbook: String,
    /// The proposal or execution this outage's alerts belong to.
    pub execution: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
}
