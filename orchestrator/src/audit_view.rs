//! `GET /api/v1/audit`: the audit chain as the API pages it (by seq, oldest first) and
//! filters it (actor, execution, time), from the shared chain or, in cluster mode, this
//! instance's local chain of status changes.

use std::collections::BTreeMap;

use niledr_web::ApiError;
use niledr_web::types::{AuditEntryView, AuditPageView, AuditQuery};

use crate::records::AuditRecordV1;
use crate::store::Store;

/// The filters, parsed.
struct Filter<'a> {
    actor: Option<&'a str>,
    execution: Option<&'a str>,
    since: Option<jiff::Timestamp>,
    until: Option<jiff::Timestamp>,
}

fn time(name: &str, v: Option<&str>) -> Result<Option<jiff::Timestamp>, ApiError> {
    v.map(|s| {
        s.parse::<jiff::Timestamp>().map_err(|e| {
            ApiError::BadRequest(format!(
                "{name} must be an RFC 3339 time such as 2026-12-01T03:00:00Z, got {s:?}: {e}"
            ))
        })
    })
    .transpose()
}

/// The execution an entry is about: `detail.execution`, or `detail.id` of the execution's
/// own entries (transitions, steps, approvals).
pub fn execution_of(r: &AuditRecordV1) -> Option<String> {
    let d = &r.detail;
    if let Some(e) = d.get("execution").and_then(|v| v.as_str()) {
        return Some(e.to_string());
    }
    let own = ["execution.", "step.", "approval."]
        .iter()
        .any(|p| r.action.starts_with(p));
    own.then(|| d.get("id").and_then(|v| v.as_str()).map(str::to_string))
        .flatten()
}

impl Filter<'_> {
    fn keeps(&self, r: &AuditRecordV1) -> bool {
        if self.actor.is_some_and(|a| a != r.actor) {
            return false;
        }
        if let Some(e) = self.execution
            && execution_of(r).as_deref() != Some(e)
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(at) = r.at.parse::<jiff::Timestamp>() else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at >= u) {
                return false;
            }
        }
        true
    }
}

pub fn entry_view(r: &AuditRecordV1) -> AuditEntryView {
    let detail: BTreeMap<String, String> = match &r.detail {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), shown)
            })
            .collect(),
        serde_json::Value::Null => BTreeMap::new(),
        other => [("value".to_string(), other.to_string())].into(),
    };
    crate::redact::view(&AuditEntryView {
        seq: r.seq,
        at: r.at.clone(),
        actor: r.actor.clone(),
        kind: r.action.clone(),
        execution: execution_of(r),
        detail,
        prev_hash: r.prev_hash.clone(),
        hash: r.hash.clone(),
    })
}

/// One page of `entries` (in seq order) for `q`.
pub fn page(
    chain: &str,
    entries: &[AuditRecordV1],
    q: &AuditQuery,
) -> Result<AuditPageView, ApiError> {
    let f = Filter {
        actor: q.actor.as_deref(),
        execution: q.execution.as_deref(),
        since: time("since", q.since.as_deref())?,
        until: time("until", q.until.as_deref())?,
    };
    if let (Some(s), Some(u)) = (f.since, f.until)
        && s >= u
    {
        return Err(ApiError::BadRequest(format!(
            "since ({s}) must be before until ({u})"
        )));
    }
    let mut matching = entries.iter().filter(|r| r.seq > q.after && f.keeps(r));
    let list: Vec<AuditEntryView> = matching.by_ref().take(q.limit).map(entry_view).collect();
    let more = matching.next().is_some();
    Ok(AuditPageView {
        chain: chain.to_string(),
        next_after: if more {
            list.last().map(|e| e.seq)
        } else {
            None
        },
        entries: list,
        head_seq: entries.last().map_or(0, |r| r.seq),
    })
}

/// The page from the daemon's store: the shared chain, or `chain=local` in cluster mode.
pub fn query(store: &Store, q: &AuditQuery) -> Result<AuditPageView, ApiError> {
    let internal = |e: anyhow::Error| ApiError::Internal(format!("reading the audit chain: {e:#}"));
    match q.chain.as_deref() {
        Some("local") if !store.is_clustered() => Err(ApiError::BadRequest(
            "chain=local exists only in cluster mode; this daemon keeps one chain (leave chain out)"
                .into(),
        )),
        Some("local") => page("local", &store.local_audit_entries().map_err(internal)?, q),
        _ => page("shared", &store.audit_entries().map_err(internal)?, q),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain() -> Vec<AuditRecordV1> {
        let t0: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let rows = [
            (
                "amira",
                "approval.approved",
                serde_json::json!({ "id": "e1" }),
            ),
            (
                "niledr",
                "step.intent",
                serde_json::json!({ "id": "e1", "step": "fence" }),
            ),
            (
                "niledr",
                "status.changed",
                serde_json::json!({ "service": "s", "id": 9 }),
            ),
            (
                "omar",
                "approval.approved",
                serde_json::json!({ "id": "e2" }),
            ),
            (
                "drill:x",
                "drill.started",
                serde_json::json!({ "id": "r1", "execution": "e2" }),
            ),
        ];
        let mut out: Vec<AuditRecordV1> = Vec::new();
        for (i, (actor, action, detail)) in rows.into_iter().enumerate() {
            let at = t0 + jiff::SignedDuration::from_mins(i as i64);
            out.push(crate::audit::next_entry(
                out.last(),
                at,
                actor,
                action,
                detail,
            ));
        }
        out
    }

    fn q(after: u64, limit: usize) -> AuditQuery {
        AuditQuery {
            after,
            limit,
            ..Default::default()
        }
    }

    fn seqs(p: &AuditPageView) -> Vec<u64> {
        p.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn pages_follow_seq_and_end() {
        let c = chain();
        let p1 = page("shared", &c, &q(0, 2)).unwrap();
        assert_eq!(
            (seqs(&p1), p1.next_after, p1.head_seq),
            (vec![1, 2], Some(2), 5)
        );
        let p2 = page("shared", &c, &q(2, 2)).unwrap();
        assert_eq!((seqs(&p2), p2.next_after), (vec![3, 4], Some(4)));
        let p3 = page("shared", &c, &q(4, 2)).unwrap();
        assert_eq!((seqs(&p3), p3.next_after), (vec![5], None));
        // exactly `limit` left: no next page
        assert_eq!(page("shared", &c, &q(3, 2)).unwrap().next_after, None);
    }

    #[test]
    fn filters_by_actor_execution_and_time() {
        let c = chain();
        let mut f = q(0, 10);
        f.execution = Some("e1".into());
        assert_eq!(seqs(&page("shared", &c, &f).unwrap()), [1, 2]);
        f.execution = Some("e2".into());
        assert_eq!(seqs(&page("shared", &c, &f).unwrap()), [4, 5]);
        // a status change's numeric id is no execution
        f.execution = Some("9".into());
        assert!(page("shared", &c, &f).unwrap().entries.is_empty());
        let mut f = q(0, 10);
        f.actor = Some("niledr".into());
        assert_eq!(seqs(&page("shared", &c, &f).unwrap()), [2, 3]);
        let mut f = q(0, 10);
        f.since = Some("2026-12-01T00:01:00Z".into());
        f.until = Some("2026-12-01T00:03:00Z".into());
        assert_eq!(seqs(&page("shared", &c, &f).unwrap()), [2, 3]);
        // filters and paging together: the next page starts after the last one shown
        let mut f = q(0, 1);
        f.actor = Some("niledr".into());
        let p = page("shared", &c, &f).unwrap();
        assert_eq!((seqs(&p), p.next_after), (vec![2], Some(2)));
    }

    #[test]
    fn bad_times_are_400_naming_the_parameter() {
        let c = chain();
        let mut f = q(0, 10);
        f.since = Some("yesterday".into());
        let e = page("shared", &c, &f).unwrap_err();
        assert!(
            matches!(&e, ApiError::BadRequest(m) if m.contains("since must be an RFC 3339")),
            "{e:?}"
        );
        let mut f = q(0, 10);
        f.since = Some("2026-12-02T00:00:00Z".into());
        f.until = Some("2026-12-01T00:00:00Z".into());
        assert!(matches!(
            page("shared", &c, &f),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn details_are_strings_and_the_execution_is_named() {
        let c = chain();
        let e = entry_view(&c[1]);
        assert_eq!(e.kind, "step.intent");
        assert_eq!(e.execution.as_deref(), Some("e1"));
        assert_eq!(e.detail["step"], "fence");
        assert_eq!(entry_view(&c[2]).detail["id"], "9");
        assert_eq!(e.hash, c[1].hash);
    }
}
