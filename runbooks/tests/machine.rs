//! The execution machine survives a serde round trip at every state (statig's tests/serde.rs),
//! and a resumed machine continues where it stopped without re-issuing effects.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod common;

use common::shipped;
use niledr_runbooks::{Effect, Event, Machine, State};

#[test]
fn serde_round_trip_and_resume() {
    let rb = shipped("failover-khartoum-to-port-sudan.toml");
    let mut m = Machine::new(&rb);
    let fresh = serde_json::to_string(&m).unwrap();
    assert_eq!(serde_json::from_str::<Machine>(&fresh).unwrap(), m);

    m.handle(&Event::Submit {
        digest: "d1".into(),
    });
    m.handle(&Event::Approved);
    m.handle(&Event::Start);
    m.handle(&Event::StepSucceeded { index: 0 });
    assert_eq!(m.state(), &State::Running { step: 1 });

    // The stored form: statig's shared storage + state.
    let saved = serde_json::to_value(&m).unwrap();
    assert_eq!(
        saved["state"],
        serde_json::json!({ "Running": { "step": 1 } })
    );
    assert_eq!(saved["shared_storage"]["done"], serde_json::json!([0]));

    // "Crash": resume from the stored form. No effect is produced by resuming itself; the
    // next event continues the run.
    let mut resumed: Machine = serde_json::from_value(saved).unwrap();
    assert_eq!(resumed, m);
    let out = resumed.handle(&Event::StepSucceeded { index: 1 });
    assert_eq!(
        out.effects,
        vec![Effect::RunStep {
            index: 2,
            step: "fence-khartoum-pg".into(),
            attempt: 1
        }]
    );
    assert_eq!(out.transitions.len(), 1);
    assert_eq!(resumed.state().name(), "running");
    assert!(resumed.state().is_active() && !resumed.state().is_terminal());
}

#[test]
fn stale_step_events_are_refused() {
    let rb = shipped("failover-khartoum-to-port-sudan.toml");
    let mut m = Machine::new(&rb);
    for e in [
        Event::Submit {
            digest: "d1".into(),
        },
        Event::Approved,
        Event::Start,
    ] {
        m.handle(&e);
    }
    let out = m.handle(&Event::StepSucceeded { index: 5 });
    assert!(out.transitions.is_empty() && out.effects.is_empty());
    assert_eq!(
        out.refused.as_deref(),
        Some("step_succeeded does not apply while running")
    );
    assert_eq!(m.state(), &State::Running { step: 0 });
}
