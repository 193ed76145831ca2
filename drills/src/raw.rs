//! The drill file exactly as written: serde types with spans that refuse unknown keys.

use serde::Deserialize;
use toml::Spanned;

pub(crate) type Str = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDrill {
    pub name: Str,
    pub description: Option<String>,
    pub schedule: Option<Str>,
    pub timezone: Option<Str>,
    pub blackout: Option<Spanned<Vec<Str>>>,
    pub runbook: Str,
    pub approval: Option<Str>,
    pub scenario: Spanned<RawScenario>,
    pub objectives: Spanned<RawObjectives>,
    pub abort: Option<Spanned<RawAbort>>,
    pub cleanup: Option<Spanned<RawCleanup>>,
    pub automate: Option<Vec<RawAutomation>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub fault: Str,
    pub target: Str,
    pub lag_before_fault: Option<Str>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjectives {
    pub rto: Str,
    pub rpo_postgres: Option<Str>,
    pub rpo_redis: Option<Str>,
    pub no_lost_writes: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAbort {
    pub rto_factor: Option<Spanned<f64>>,
    pub max_lost_writes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCleanup {
    pub runbook: Str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAutomation {
    pub step: Str,
    pub target: Option<Str>,
    pub action: Str,
    pub of: Option<Str>,
    pub note: Option<String>,
}
