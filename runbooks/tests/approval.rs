//! Approval policy, table-driven: who counts, who is refused and with which error.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use niledr_runbooks::{
    Approval, ApprovalError, ApprovalPolicy, Decision, Status, add_approval, expires_at, status,
};

const MIN: u64 = 60_000;
const D: &str = "digest-1";

fn two_roles() -> ApprovalPolicy {
    ApprovalPolicy {
        required: 2,
        roles: vec!["incident_commander".into(), "engineering_lead".into()],
        expires_after_ms: 30 * MIN,
        break_glass: true,
        ..ApprovalPolicy::default()
    }
}

fn plain() -> ApprovalPolicy {
    ApprovalPolicy::default()
}

fn a(user: &str, roles: &[&str]) -> Approval {
    Approval {
        user: user.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        decision: Decision::Approve,
        comment: None,
        at_ms: 0,
        digest: D.into(),
        break_glass_reason: None,
    }
}

fn reject(user: &str) -> Approval {
    Approval {
        decision: Decision::Reject,
        comment: Some("lag too high".into()),
        ..a(user, &[])
    }
}

fn at(mut x: Approval, at_ms: u64) -> Approval {
    x.at_ms = at_ms;
    x
}

fn for_digest(mut x: Approval, d: &str) -> Approval {
    x.digest = d.into();
    x
}

fn glass(mut x: Approval, reason: &str) -> Approval {
    x.break_glass_reason = Some(reason.into());
    x
}

const IC: &str = "incident_commander";
const EL: &str = "engineering_lead";

#[test]
fn add_approval_table() {
    struct Case {
        what: &'static str,
        policy: ApprovalPolicy,
        existing: Vec<Approval>,
        new: Approval,
        now: u64,
        want: Result<Status, ApprovalError>,
    }
    let pending = |missing: &[&str], have, need| {
        Ok(Status::Pending {
            missing_roles: missing.iter().map(|s| s.to_string()).collect(),
            have,
            need,
        })
    };
    let approved = |by: &[&str]| {
        Ok(Status::Approved {
            by: by.iter().map(|s| s.to_string()).collect(),
            break_glass: false,
        })
    };
    let cases = vec![
        Case {
            what: "first approval with a role",
            policy: two_roles(),
            existing: vec![],
            new: a("amna", &[IC]),
            now: 0,
            want: pending(&[EL], 1, 2),
        },
        Case {
            what: "second role completes it",
            policy: two_roles(),
            existing: vec![a("amna", &[IC])],
            new: a("badr", &[EL]),
            now: 0,
            want: approved(&["amna", "badr"]),
        },
        Case {
            what: "requester cannot approve",
            policy: two_roles(),
            existing: vec![],
            new: a("req", &[IC]),
            now: 0,
            want: Err(ApprovalError::RequesterCannotApprove),
        },
        Case {
            what: "requester cannot reject either",
            policy: two_roles(),
            existing: vec![],
            new: reject("req"),
            now: 0,
            want: Err(ApprovalError::RequesterCannotApprove),
        },
        Case {
            what: "same person twice",
            policy: plain(),
            existing: vec![a("amna", &[])],
            new: a("amna", &[]),
            now: 0,
            want: Err(ApprovalError::AlreadyDecided {
                user: "amna".into(),
            }),
        },
        Case {
            what: "same person again after their approval expired",
            policy: plain(),
            existing: vec![a("amna", &[])],
            new: at(a("amna", &[]), 31 * MIN),
            now: 31 * MIN,
            want: pending(&[], 1, 2),
        },
        Case {
            what: "wrong role",
            policy: two_roles(),
            existing: vec![a("amna", &[IC])],
            new: a("badr", &["dba"]),
            now: 0,
            want: Err(ApprovalError::WrongRole {
                user: "badr".into(),
                missing: vec![EL.into()],
            }),
        },
        Case {
            what: "role already covered",
            policy: two_roles(),
            existing: vec![a("amna", &[IC])],
            new: a("badr", &[IC]),
            now: 0,
            want: Err(ApprovalError::RoleAlreadyCovered {
                user: "badr".into(),
                missing: vec![EL.into()],
            }),
        },
        Case {
            what: "a person with both roles is moved to the role still open",
            policy: two_roles(),
            existing: vec![a("amna", &[IC, EL])],
            new: a("badr", &[IC]),
            now: 0,
            want: approved(&["amna", "badr"]),
        },
        Case {
            what: "roles plus a generic third approver",
            policy: ApprovalPolicy {
                required: 3,
                ..two_roles()
            },
            existing: vec![a("amna", &[IC]), a("badr", &[EL])],
            new: a("carl", &[]),
            now: 0,
            want: approved(&["amna", "badr", "carl"]),
        },
        Case {
            what: "approval for another plan",
            policy: two_roles(),
            existing: vec![],
            new: for_digest(a("amna", &[IC]), "digest-0"),
            now: 0,
            want: Err(ApprovalError::DigestMismatch {
                approved: "digest-0".into(),
                current: D.into(),
            }),
        },
        Case {
            what: "approvals for the old plan do not count",
            policy: plain(),
            existing: vec![for_digest(a("amna", &[]), "digest-0")],
            new: a("badr", &[]),
            now: 0,
            want: pending(&[], 1, 2),
        },
        Case {
            what: "expired approvals do not count",
            policy: plain(),
            existing: vec![a("amna", &[])],
            new: at(a("badr", &[]), 30 * MIN),
            now: 30 * MIN,
            want: pending(&[], 1, 2),
        },
        Case {
            what: "a single rejection ends it",
            policy: plain(),
            existing: vec![a("amna", &[])],
            new: reject("badr"),
            now: 0,
            want: Ok(Status::Rejected {
                by: "badr".into(),
                comment: Some("lag too high".into()),
            }),
        },
        Case {
            what: "nothing after a rejection",
            policy: plain(),
            existing: vec![reject("badr")],
            new: a("amna", &[]),
            now: 0,
            want: Err(ApprovalError::AlreadyRejected { by: "badr".into() }),
        },
        Case {
            what: "break-glass alone approves",
            policy: two_roles(),
            existing: vec![],
            new: glass(
                a("amna", &["dba"]),
                "IC and lead unreachable; Khartoum flooded",
            ),
            now: 0,
            want: Ok(Status::Approved {
                by: vec!["amna".into()],
                break_glass: true,
            }),
        },
        Case {
            what: "break-glass not allowed by the runbook",
            policy: plain(),
            existing: vec![],
            new: glass(a("amna", &[]), "nobody answers"),
            now: 0,
            want: Err(ApprovalError::BreakGlassNotAllowed),
        },
        Case {
            what: "break-glass needs a reason",
            policy: two_roles(),
            existing: vec![],
            new: glass(a("amna", &[IC]), "   "),
            now: 0,
            want: Err(ApprovalError::BreakGlassNeedsReason),
        },
    ];
    let mut failures = Vec::new();
    for c in cases {
        let got = add_approval(&c.policy, "req", &c.existing, c.new, D, c.now);
        if got != c.want {
            failures.push(format!(
                "{}:\n  want {:?}\n  got  {:?}",
                c.what, c.want, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn status_table() {
    let cases: Vec<(&str, ApprovalPolicy, Vec<Approval>, u64, Status)> = vec![
        (
            "nothing yet",
            two_roles(),
            vec![],
            0,
            Status::Pending {
                missing_roles: vec![IC.into(), EL.into()],
                have: 0,
                need: 2,
            },
        ),
        (
            "approved expires",
            plain(),
            vec![a("amna", &[]), at(a("badr", &[]), 10 * MIN)],
            31 * MIN,
            Status::Pending {
                missing_roles: vec![],
                have: 1,
                need: 2,
            },
        ),
        (
            "break-glass approvals are ignored when the runbook forbids it",
            plain(),
            vec![glass(a("amna", &[]), "reason")],
            0,
            Status::Pending {
                missing_roles: vec![],
                have: 0,
                need: 2,
            },
        ),
        (
            "rejections count even for an old plan",
            plain(),
            vec![a("amna", &[]), for_digest(reject("badr"), "digest-0")],
            0,
            Status::Rejected {
                by: "badr".into(),
                comment: Some("lag too high".into()),
            },
        ),
    ];
    for (what, policy, approvals, now, want) in cases {
        assert_eq!(status(&policy, &approvals, D, now), want, "{what}");
    }
}

#[test]
fn expiry_is_the_earliest_counted_approval() {
    let p = plain();
    let list = [at(a("amna", &[]), 5 * MIN), at(a("badr", &[]), 10 * MIN)];
    assert_eq!(expires_at(&p, &list, D, 11 * MIN), Some(35 * MIN));
    assert_eq!(expires_at(&p, &list, "other", 11 * MIN), None);
}

#[test]
fn http_statuses() {
    assert_eq!(
        ApprovalError::RequesterCannotApprove.suggested_http_status(),
        403
    );
    assert_eq!(
        ApprovalError::AlreadyDecided { user: "x".into() }.suggested_http_status(),
        409
    );
    assert_eq!(
        ApprovalError::BreakGlassNeedsReason.suggested_http_status(),
        400
    );
    assert_eq!(
        ApprovalError::DigestMismatch {
            approved: "a".into(),
            current: "b".into()
        }
        .suggested_http_status(),
        409
    );
}
