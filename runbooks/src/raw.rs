//! The runbook file exactly as written: serde types with spans that refuse unknown keys.
//! `validate` turns them into the checked `Runbook`.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::schema::{FenceMode, Mode, OnUnreachable};

pub(crate) type Str = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRunbook {
    pub name: Str,
    pub description: Option<String>,
    pub mode: Option<Spanned<Mode>>,
    pub services: Option<Spanned<Vec<Str>>>,
    pub approval: Option<Spanned<RawApproval>>,
    pub trigger: Option<Spanned<RawTrigger>>,
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproval {
    pub required: Option<Spanned<u32>>,
    pub roles: Option<Spanned<Vec<Str>>>,
    pub expires_after: Option<Spanned<Dur>>,
    pub break_glass: Option<bool>,
    pub auto_approve: Option<Spanned<bool>>,
    pub tolerance: Option<RawTolerance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTolerance {
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    pub service_down: Str,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<Dur>>,
    pub standby: Option<Str>,
    pub max_standby_lag_bytes: Option<u64>,
}

/// One flat table for every step kind so each key keeps its own span; `validate` refuses keys
/// that do not belong to the step's kind. Also used for an explicit `rollback = { ... }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    pub id: Option<Str>,
    pub kind: Str,
    pub description: Option<String>,
    pub timeout: Option<Spanned<Dur>>,
    pub retries: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<Dur>>,
    pub verify: Option<Spanned<bool>>,
    pub rollback: Option<Spanned<Box<RawStep>>>,
    pub irreversible: Option<Spanned<bool>>,
    pub reason: Option<Str>,

    pub service: Option<Str>,
    pub of: Option<Str>,
    pub replica: Option<Str>,
    pub target: Option<Str>,
    pub to_service: Option<Str>,
    pub from_service: Option<Str>,
    pub from_site: Option<Str>,
    pub to_site: Option<Str>,
    pub name: Option<Str>,
    pub expect_site: Option<Str>,
    pub expect_service: Option<Str>,
    pub via: Option<Str>,
    pub url: Option<Str>,
    pub item: Option<Str>,
    pub mode: Option<Spanned<FenceMode>>,
    pub on_unreachable: Option<Spanned<OnUnreachable>>,
    pub max_lag_bytes: Option<Spanned<u64>>,
    pub max_lag_seconds: Option<Spanned<u64>>,
    pub max_lag_age: Option<Spanned<Dur>>,
    pub unreachable_after: Option<Spanned<Dur>>,
    pub ttl: Option<Spanned<u32>>,
    pub expect_status: Option<Spanned<u16>>,
    pub until: Option<Spanned<RawUntil>>,
    pub level: Option<Spanned<u8>>,
    pub message: Option<Str>,
}

impl RawStep {
    /// Every kind-specific parameter that was written, with its span.
    pub fn params_present(&self) -> Vec<(&'static str, Range<usize>)> {
        fn s<T>(
            name: &'static str,
            v: &Option<Spanned<T>>,
        ) -> Option<(&'static str, Range<usize>)> {
            v.as_ref().map(|v| (name, v.span()))
        }
        [
            s("service", &self.service),
            s("of", &self.of),
            s("replica", &self.replica),
            s("target", &self.target),
            s("to_service", &self.to_service),
            s("from_service", &self.from_service),
            s("from_site", &self.from_site),
            s("to_site", &self.to_site),
            s("name", &self.name),
            s("expect_site", &self.expect_site),
            s("expect_service", &self.expect_service),
            s("via", &self.via),
            s("url", &self.url),
            s("item", &self.item),
            s("mode", &self.mode),
            s("on_unreachable", &self.on_unreachable),
            s("max_lag_bytes", &self.max_lag_bytes),
            s("max_lag_seconds", &self.max_lag_seconds),
            s("max_lag_age", &self.max_lag_age),
            s("unreachable_after", &self.unreachable_after),
            s("ttl", &self.ttl),
            s("expect_status", &self.expect_status),
            s("until", &self.until),
            s("level", &self.level),
            s("message", &self.message),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUntil {
    pub service_up: Option<Str>,
    pub service_down: Option<Str>,
    /// A standby streaming from `of`.
    pub replicating: Option<Str>,
    pub of: Option<Str>,
    pub lag_below_bytes: Option<Spanned<u64>>,
}

/// A duration written like `500ms`, `10s`, `30m`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dur(pub u64);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "bad duration {s:?} ({e}); write it like \"500ms\", \"10s\" or \"30m\""
            ))
        })?;
        let ms = u64::try_from(parsed.as_millis())
            .map_err(|_| serde::de::Error::custom(format!("duration {s:?} is too long")))?;
        Ok(Dur(ms))
    }
}
