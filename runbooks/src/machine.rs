//! The execution lifecycle as a statig (synchronous) state machine. Handlers never act: they
//! push `Effect`s into the `Outbox` (the context), and every transition is listed there too so
//! the caller can journal it before performing the effects (journal before effect).

use std::fmt;

use serde::{Deserialize, Serialize};
use statig::blocking::{IntoStateMachineExt as _, StateMachine};
use statig::prelude::*;

use crate::schema::{Rollback, Runbook};

/// What undoing a step takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// The step changes nothing.
    Nothing,
    /// Its rollback (automatic inverse or explicit) runs.
    Rollback,
    /// Declared irreversible: a rollback pass leaves it and says so.
    Irreversible,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInfo {
    pub id: String,
    pub retries: u32,
    pub backoff_ms: u64,
    pub undo: Undo,
}

/// The machine's shared storage: what the execution has done so far. Persisted with the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub runbook: String,
    pub steps: Vec<StepInfo>,
    /// The plan digest the approvals are bound to.
    pub digest: Option<String>,
    /// Attempts started per step.
    pub attempts: Vec<u32>,
    /// Steps completed, in order.
    pub done: Vec<usize>,
    pub pause_requested: bool,
    pub cancel_requested: bool,
    /// Steps still to roll back after the current one, in order.
    pub rollback_queue: Vec<usize>,
    /// Steps a rollback pass left as they are (irreversible), by id.
    pub not_undone: Vec<String>,
    /// Why the run stopped short, when it did.
    pub failure: Option<String>,
    /// An irreversible step has succeeded or may have partly applied: from here on nothing is
    /// rolled back (the old side is never made writable again), and a failure or a cancel
    /// ends in `needs_operator` with "retry STEP" or the failback runbook as ways forward.
    #[serde(default)]
    pub past_point_of_no_return: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// The plan was computed; ask for approval of `digest`. Again while awaiting: a new plan.
    Submit {
        digest: String,
    },
    /// The approval policy is satisfied (or the runbook auto-approves a trigger's proposal).
    Approved,
    Rejected,
    /// The proposal or its approvals ran out of time.
    Expire,
    Start,
    StepSucceeded {
        index: usize,
    },
    StepFailed {
        index: usize,
        retryable: bool,
        error: String,
        /// The action is certain it changed nothing (e.g. it could not connect before acting).
        /// An irreversible step that fails this way does not pass the point of no return.
        #[serde(default)]
        untouched: bool,
    },
    RetryDue {
        index: usize,
    },
    VerifySucceeded,
    VerifyFailed {
        error: String,
    },
    Pause,
    Resume,
    Cancel,
    RollbackStepDone {
        index: usize,
    },
    RollbackStepFailed {
        index: usize,
        error: String,
    },
    /// Checked at start: the world moved beyond the approved tolerance.
    PreconditionsDrifted {
        details: Vec<String>,
    },
    /// Checked at start, before anything is touched: a step could not run as planned (a file
    /// missing, a TSIG key refused, a target not answering). Ends the execution untouched.
    NotReady {
        details: Vec<String>,
    },
    /// A step's task ended abnormally (panic, abort): it may have partly applied. The
    /// execution stops for an operator.
    StepCrashed {
        index: usize,
        error: String,
    },
    /// An operator rolls forward from `needs_operator`: run step `index` again and continue
    /// (`index` = the number of steps: run the verification again).
    Retry {
        index: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Info,
    Warning,
    /// A person must look now.
    Critical,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Run (or, after a crash, re-check then run) step `index`.
    RunStep {
        index: usize,
        step: String,
        attempt: u32,
    },
    /// Send `RetryDue { index }` after `after_ms`.
    ScheduleRetry {
        index: usize,
        step: String,
        attempt: u32,
        after_ms: u64,
    },
    RollbackStep {
        index: usize,
        step: String,
    },
    /// Run the end-to-end verification, answer `VerifySucceeded` / `VerifyFailed`.
    Verify,
    Notify {
        level: Level,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transitioned {
    pub from: State,
    pub to: State,
}

/// The context handlers write into; the caller journals `transitions`, then performs `effects`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbox {
    pub transitions: Vec<Transitioned>,
    pub effects: Vec<Effect>,
    /// Set when the event does not apply in the current state (an API maps it to 409).
    pub refused: Option<String>,
}

impl Outbox {
    fn notify(&mut self, level: Level, message: impl Into<String>) {
        self.effects.push(Effect::Notify {
            level,
            message: message.into(),
        });
    }
}

impl Execution {
    pub fn new(runbook: &Runbook) -> Self {
        let steps: Vec<StepInfo> = runbook
            .steps
            .iter()
            .map(|s| StepInfo {
                id: s.id.clone(),
                retries: s.retries,
                backoff_ms: s.backoff_ms,
                undo: match s.rollback {
                    Rollback::None => Undo::Nothing,
                    Rollback::Inverse | Rollback::Explicit(_) => Undo::Rollback,
                    Rollback::Irreversible { .. } => Undo::Irreversible,
                },
            })
            .collect();
        Execution {
            runbook: runbook.name.clone(),
            attempts: vec![0; steps.len()],
            steps,
            digest: None,
            done: Vec::new(),
            pause_requested: false,
            cancel_requested: false,
            rollback_queue: Vec::new(),
            not_undone: Vec::new(),
            failure: None,
            past_point_of_no_return: false,
        }
    }
}

fn refuse(ctx: &mut Outbox, state: &str, event: &Event) -> Outcome<State> {
    ctx.refused = Some(format!(
        "{} does not apply while {state}",
        event_name(event)
    ));
    Handled
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::Submit { .. } => "submit",
        Event::Approved => "approved",
        Event::Rejected => "rejected",
        Event::Expire => "expire",
        Event::Start => "start",
        Event::StepSucceeded { .. } => "step_succeeded",
        Event::StepFailed { .. } => "step_failed",
        Event::RetryDue { .. } => "retry_due",
        Event::VerifySucceeded => "verify_succeeded",
        Event::VerifyFailed { .. } => "verify_failed",
        Event::Pause => "pause",
        Event::Resume => "resume",
        Event::Cancel => "cancel",
        Event::RollbackStepDone { .. } => "rollback_step_done",
        Event::RollbackStepFailed { .. } => "rollback_step_failed",
        Event::PreconditionsDrifted { .. } => "preconditions_drifted",
        Event::NotReady { .. } => "not_ready",
        Event::Retry { .. } => "retry",
        Event::StepCrashed { .. } => "step_crashed",
    }
}

#[state_machine(
    initial = "State::proposed()",
    after_transition = "Self::after_transition",
    state(derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize))
)]
impl Execution {
    #[state]
    fn proposed(&mut self, context: &mut Outbox, event: &Event) -> Outcome<State> {
        match event {
            Event::Submit { digest } => {
                self.digest = Some(digest.clone());
                Transition(State::awaiting_approval())
            }
            Event::Cancel => Transition(State::cancelled()),
            _ => refuse(context, "proposed", event),
        }
    }

    #[state]
    fn awaiting_approval(&mut self, context: &mut Outbox, event: &Event) -> Outcome<State> {
        match event {
            Event::Approved => Transition(State::approved()),
            Event::Rejected => Transition(State::rejected()),
            Event::Expire => Transition(State::expired()),
            Event::Cancel => Transition(State::cancelled()),
            Event::Submit { digest } => {
                if self.digest.as_ref() != Some(digest) {
                    self.digest = Some(digest.clone());
                    context.notify(
                        Level::Warning,
                        format!("the plan changed (now {digest}): approvals of the old plan no longer count"),
                    );
                }
                Handled
            }
            Event::PreconditionsDrifted { .. } => Handled,
            _ => refuse(context, "awaiting approval", event),
        }
    }

    #[state]
    fn approved(&mut self, context: &mut Outbox, event: &Event) -> Outcome<State> {
        match event {
            Event::Start => self.run_from(0, context),
            Event::NotReady { details } => {
                self.failure = Some(format!(
                    "not ready, nothing was touched: {}",
                    details.join("; ")
                ));
                context.notify(
                    Level::Critical,
                    format!(
                        "{} is not ready; it stopped before its first step: {}",
                        self.runbook,
                        details.join("; ")
                    ),
                );
                Transition(State::failed(false))
            }
            Event::PreconditionsDrifted { details } => {
                context.notify(
                    Level::Warning,
                    format!(
                        "preconditions drifted since approval ({}); fresh approval needed",
                        details.join("; ")
                    ),
                );
                Transition(State::awaiting_approval())
            }
            Event::Submit { digest } if self.digest.as_ref() != Some(digest) => {
                self.digest = Some(digest.clone());
                context.notify(
                    Level::Warning,
                    format!(
                        "the plan changed (now {digest}) after approval; fresh approval needed"
                    ),
                );
                Transition(State::awaiting_approval())
            }
            // Repeated by the caller after each further approval: nothing to do.
            Event::Submit { .. } | Event::Approved => Handled,
            Event::Rejected => Transition(State::rejected()),
            Event::Expire => Transition(State::expired()),
            Event::Cancel => Transition(State::cancelled()),
            _ => refuse(context, "approved", event),
        }
    }

    #[state]
    fn running(&mut self, step: &mut usize, context: &mut Outbox, event: &Event) -> Outcome<State> {
        let current = *step;
        match event {
            Event::StepSucceeded { index } if *index == current => {
                self.done.push(current);
                if self.steps[current].undo == Undo::Irreversible {
                    self.past_point_of_no_return = true;
                }
                if self.cancel_requested {
                    return self.cancel(None, current + 1, context);
                }
                let next = current + 1;
                if next == self.steps.len() {
                    context.effects.push(Effect::Verify);
                    Transition(State::verifying())
                } else if self.pause_requested {
                    Transition(State::paused(next))
                } else {
                    self.run_from(next, context)
                }
            }
            Event::StepFailed {
                index,
                retryable,
                error,
                untouched,
            } if *index == current => {
                if self.steps[current].undo == Undo::Irreversible && !untouched {
                    self.past_point_of_no_return = true;
                }
                let info = &self.steps[current];
                let attempt = self.attempts[current];
                if self.cancel_requested {
                    // A step certain it changed nothing has nothing of its own to undo.
                    let failed = Some(current).filter(|_| !untouched);
                    return self.cancel(failed, current, context);
                }
                if *retryable && attempt <= info.retries {
                    let shift = attempt.saturating_sub(1).min(16);
                    let after_ms = info.backoff_ms.saturating_mul(1 << shift).min(60_000);
                    context.effects.push(Effect::ScheduleRetry {
                        index: current,
                        step: info.id.clone(),
                        attempt: attempt + 1,
                        after_ms,
                    });
                    return Handled;
                }
                let id = info.id.clone();
                self.failure = Some(format!(
                    "step {id} failed after {attempt} attempt(s): {error}"
                ));
                if self.past_point_of_no_return {
                    return self.stop_for_operator(current, context);
                }
                context.notify(
                    Level::Critical,
                    format!("step {id} failed: {error}; rolling back"),
                );
                // A step that is certain it changed nothing has nothing of its own to undo.
                self.start_rollback(Some(current).filter(|_| !untouched), context)
            }
            Event::StepCrashed { index, error } if *index == current => {
                let info = &self.steps[current];
                if info.undo == Undo::Irreversible {
                    self.past_point_of_no_return = true;
                }
                self.failure = Some(format!(
                    "step {}'s task ended abnormally ({error}); it may have partly applied",
                    info.id
                ));
                self.stop_for_operator(current, context)
            }
            Event::RetryDue { index } if *index == current => {
                if self.cancel_requested {
                    return self.cancel(Some(current), current, context);
                }
                if self.pause_requested {
                    return Transition(State::paused(current));
                }
                self.run_from(current, context)
            }
            Event::Pause => {
                self.pause_requested = true;
                context.notify(
                    Level::Info,
                    format!("pausing after step {} finishes", self.steps[current].id),
                );
                Handled
            }
            Event::Resume if self.pause_requested => {
                self.pause_requested = false;
                Handled
            }
            Event::Cancel => {
                self.cancel_requested = true;
                let then = if self.past_point_of_no_return
                    || self.steps[current].undo == Undo::Irreversible
                {
                    "stopping (past the point of no return: nothing is rolled back)"
                } else {
                    "rolling back"
                };
                context.notify(
                    Level::Warning,
                    format!(
                        "cancel requested: {then} after step {} finishes",
                        self.steps[current].id
                    ),
                );
                Handled
            }
            // Too late: the run has started on the approved snapshot.
            Event::PreconditionsDrifted { .. } => Handled,
            _ => refuse(context, "running", event),
        }
    }

    #[state]
    fn paused(&mut self, next: &mut usize, context: &mut Outbox, event: &Event) -> Outcome<State> {
        match event {
            Event::Resume => {
                self.pause_requested = false;
                self.run_from(*next, context)
            }
            Event::Cancel => {
                let next = *next;
                self.cancel(None, next, context)
            }
            Event::Pause | Event::PreconditionsDrifted { .. } => Handled,
            _ => refuse(context, "paused", event),
        }
    }

    #[state]
    fn verifying(&mut self, context: &mut Outbox, event: &Event) -> Outcome<State> {
        match event {
            Event::VerifySucceeded => {
                context.notify(Level::Info, format!("{} succeeded", self.runbook));
                Transition(State::succeeded())
            }
            Event::VerifyFailed { error } => {
                self.failure = Some(format!("verification failed: {error}"));
                if self.past_point_of_no_return {
                    return self.stop_for_operator(self.steps.len(), context);
                }
                context.notify(
                    Level::Critical,
                    format!("verification failed: {error}; rolling back"),
                );
                self.start_rollback(None, context)
            }
            _ => refuse(context, "verifying", event),
        }
    }

    #[state]
    fn rolling_back(
        &mut self,
        step: &mut usize,
        context: &mut Outbox,
        event: &Event,
    ) -> Outcome<State> {
        match event {
            Event::RollbackStepDone { index } if *index == *step => self.next_rollback(context),
            Event::RollbackStepFailed { index, error } if *index == *step => {
                context.notify(
                    Level::Critical,
                    format!(
                        "rollback of step {} failed: {error}; an operator must take over",
                        self.steps[*step].id
                    ),
                );
                Transition(State::failed(true))
            }
            _ => refuse(context, "rolling back", event),
        }
    }

    /// Past the point of no return and stuck: nothing is undone. `step` is where a retry
    /// would start (the number of steps: the verification).
    #[state]
    fn needs_operator(
        &mut self,
        step: &mut usize,
        context: &mut Outbox,
        event: &Event,
    ) -> Outcome<State> {
        match event {
            Event::Retry { index } if *index <= self.steps.len() => {
                self.failure = None;
                self.cancel_requested = false;
                self.pause_requested = false;
                self.run_from(*index, context)
            }
            Event::Retry { index } => {
                context.refused = Some(format!(
                    "no step {index}: the runbook has {} steps",
                    self.steps.len()
                ));
                Handled
            }
            // Before the point of no return a cancel undoes what was done, as usual.
            Event::Cancel if !self.past_point_of_no_return => {
                let failed = *step;
                self.cancel(
                    Some(failed).filter(|i| *i < self.steps.len()),
                    failed,
                    context,
                )
            }
            // Closing it leaves everything as it is: the old side stays fenced.
            Event::Cancel => {
                self.failure = Some(
                    "closed by an operator past the point of no return: nothing was undone; \
                     finish by hand or run the failback runbook"
                        .into(),
                );
                Transition(State::failed(true))
            }
            Event::PreconditionsDrifted { .. } => Handled,
            _ => refuse(context, "needing an operator", event),
        }
    }

    #[state]
    fn succeeded(context: &mut Outbox, event: &Event) -> Outcome<State> {
        refuse(context, "succeeded", event)
    }

    #[state]
    fn failed(needs_operator: &mut bool, context: &mut Outbox, event: &Event) -> Outcome<State> {
        let _ = needs_operator;
        refuse(context, "failed", event)
    }

    #[state]
    fn rolled_back(context: &mut Outbox, event: &Event) -> Outcome<State> {
        refuse(context, "rolled back", event)
    }

    #[state]
    fn cancelled(context: &mut Outbox, event: &Event) -> Outcome<State> {
        refuse(context, "cancelled", event)
    }

    #[state]
    fn rejected(context: &mut Outbox, event: &Event) -> Outcome<State> {
        refuse(context, "rejected", event)
    }

    #[state]
    fn expired(context: &mut Outbox, event: &Event) -> Outcome<State> {
        refuse(context, "expired", event)
    }
}

impl Execution {
    fn after_transition(&mut self, source: &State, target: &State, context: &mut Outbox) {
        context.transitions.push(Transitioned {
            from: source.clone(),
            to: target.clone(),
        });
    }

    /// Start attempt n+1 of step `index` (or verify when there are no steps).
    fn run_from(&mut self, index: usize, context: &mut Outbox) -> Outcome<State> {
        let Some(info) = self.steps.get(index) else {
            context.effects.push(Effect::Verify);
            return Transition(State::verifying());
        };
        self.attempts[index] += 1;
        context.effects.push(Effect::RunStep {
            index,
            step: info.id.clone(),
            attempt: self.attempts[index],
        });
        Transition(State::running(index))
    }

    /// Undo what was done, newest first. `failed` is a step that failed mid-way: its rollback
    /// runs first, since it may have partly applied (rollbacks restore the recorded "before").
    fn start_rollback(&mut self, failed: Option<usize>, context: &mut Outbox) -> Outcome<State> {
        let mut order: Vec<usize> = failed.into_iter().collect();
        order.extend(self.done.iter().rev());
        self.rollback_queue.clear();
        for i in order {
            let info = &self.steps[i];
            match info.undo {
                Undo::Nothing => {}
                Undo::Rollback => self.rollback_queue.push(i),
                // It failed without changing anything (else the point of no return had passed).
                Undo::Irreversible if Some(i) == failed && !self.past_point_of_no_return => {}
                Undo::Irreversible => {
                    let note = if Some(i) == failed {
                        format!("{} (failed; may have partly applied)", info.id)
                    } else {
                        info.id.clone()
                    };
                    self.not_undone.push(note);
                }
            }
        }
        if !self.not_undone.is_empty() {
            context.notify(
                Level::Critical,
                format!(
                    "irreversible, left as they are: {}",
                    self.not_undone.join(", ")
                ),
            );
        }
        if self.rollback_queue.is_empty() {
            if self.cancel_requested && self.not_undone.is_empty() {
                return Transition(State::cancelled());
            }
            return Transition(State::failed(!self.not_undone.is_empty()));
        }
        self.next_rollback(context)
    }

    /// An operator's cancel once steps have run: undo them (nothing to undo: cancelled).
    /// Past the point of no return nothing is undone: it stops at `next` for an operator.
    fn cancel(
        &mut self,
        in_flight: Option<usize>,
        next: usize,
        context: &mut Outbox,
    ) -> Outcome<State> {
        self.cancel_requested = true;
        self.failure = Some("cancelled by an operator".into());
        if self.past_point_of_no_return {
            return self.stop_for_operator(next, context);
        }
        self.start_rollback(in_flight, context)
    }

    /// Stop past the point of no return: nothing is rolled back; say the ways forward.
    fn stop_for_operator(&mut self, next: usize, context: &mut Outbox) -> Outcome<State> {
        let retry = self
            .steps
            .get(next)
            .map_or_else(|| "verify".to_string(), |s| s.id.clone());
        let why = self.failure.clone().unwrap_or_default();
        context.notify(
            Level::Critical,
            format!(
                "{why}; past the point of no return nothing is rolled back (the old side stays \
                 fenced): fix the cause and `retry {retry}` to roll forward, or run the failback runbook"
            ),
        );
        Transition(State::needs_operator(next))
    }

    fn next_rollback(&mut self, context: &mut Outbox) -> Outcome<State> {
        if self.rollback_queue.is_empty() {
            return Transition(State::rolled_back());
        }
        let index = self.rollback_queue.remove(0);
        context.effects.push(Effect::RollbackStep {
            index,
            step: self.steps[index].id.clone(),
        });
        Transition(State::rolling_back(index))
    }
}

impl State {
    /// The phase name used in the journal and the API.
    pub fn name(&self) -> &'static str {
        match self {
            State::Proposed {} => "proposed",
            State::AwaitingApproval {} => "awaiting_approval",
            State::Approved {} => "approved",
            State::Running { .. } => "running",
            State::Paused { .. } => "paused",
            State::Verifying {} => "verifying",
            State::Succeeded {} => "succeeded",
            State::Failed { .. } => "failed",
            State::RollingBack { .. } => "rolling_back",
            State::RolledBack {} => "rolled_back",
            State::NeedsOperator { .. } => "needs_operator",
            State::Cancelled {} => "cancelled",
            State::Rejected {} => "rejected",
            State::Expired {} => "expired",
        }
    }

    /// No event moves it any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            State::Succeeded {}
                | State::Failed { .. }
                | State::RolledBack {}
                | State::Cancelled {}
                | State::Rejected {}
                | State::Expired {}
        )
    }

    /// Holds locks: acting or about to act on infrastructure.
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            State::Running { .. }
                | State::Paused { .. }
                | State::Verifying {}
                | State::RollingBack { .. }
                | State::NeedsOperator { .. }
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Running { step } => write!(f, "running{{step: {step}}}"),
            State::Paused { next } => write!(f, "paused{{next: {next}}}"),
            State::RollingBack { step } => write!(f, "rolling_back{{step: {step}}}"),
            State::NeedsOperator { step } => write!(f, "needs_operator{{step: {step}}}"),
            State::Failed { needs_operator } => {
                write!(f, "failed{{needs_operator: {needs_operator}}}")
            }
            other => f.write_str(other.name()),
        }
    }
}

/// An execution: the statig machine plus its storage. Serde round-trips it, so the
/// orchestrator can persist it with every transition and resume after a crash.
///
/// No state has entry or exit actions, so the (lazy) initialization statig runs on the first
/// event after a resume produces no effects: resuming never re-issues an effect by itself.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Machine {
    sm: StateMachine<Execution>,
}

/// Equal when state and storage are (statig's "initialized" flag is not persisted).
impl PartialEq for Machine {
    fn eq(&self, other: &Self) -> bool {
        self.state() == other.state() && self.execution() == other.execution()
    }
}

impl fmt::Debug for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machine")
            .field("state", self.sm.state())
            .field("execution", self.sm.inner())
            .finish()
    }
}

impl Machine {
    pub fn new(runbook: &Runbook) -> Self {
        Machine {
            sm: Execution::new(runbook).state_machine(),
        }
    }

    /// Feed one event; returns the transitions to journal and the effects to perform.
    pub fn handle(&mut self, event: &Event) -> Outbox {
        let mut outbox = Outbox::default();
        self.sm.handle_with_context(event, &mut outbox);
        outbox
    }

    pub fn state(&self) -> &State {
        self.sm.state()
    }

    pub fn execution(&self) -> &Execution {
        self.sm.inner()
    }
}
