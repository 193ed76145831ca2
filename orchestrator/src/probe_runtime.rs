//! The probes' own tokio runtime on its own threads: the probe scheduler, forwarding results to
//! the event loop, and the 500 ms flush/engine tick. Everything that decides health runs here
//! or on the event loop thread, never on the runtime that serves HTTP, so API work (a flood of
//! requests, argon2 runs) cannot delay a probe into a timeout and make a healthy site look down.

use std::time::Duration;

use niledr_probes::{Scheduler, Target};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::event_loop::Event;

/// Worker threads of the probe runtime: probes are I/O-bound; two keep one slow poll from
/// delaying the rest.
const WORKERS: usize = 2;
/// How often buffered probe history is written and the engine's timers are checked.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

pub struct ProbeRuntime {
    thread: std::thread::JoinHandle<()>,
    cancel: CancellationToken,
}

impl ProbeRuntime {
    /// Start probing `targets`; results and flush ticks go to the event loop through `tx`
    /// until `shutdown`. If the runtime ends on its own (a panic, the event loop gone) it
    /// cancels `shutdown`: the daemon stops rather than serve health that no longer updates.
    pub fn start(
        targets: Vec<Target>,
        tx: mpsc::Sender<Event>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<ProbeRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("niledr-probes")
            .enable_all()
            .build()?;
        let token = shutdown.clone();
        let thread = std::thread::Builder::new()
            .name("niledr-probe-rt".into())
            .spawn(move || {
                let _stop_all = token.clone().drop_guard();
                rt.block_on(run(targets, tx, token));
            })?;
        Ok(ProbeRuntime {
            thread,
            cancel: shutdown,
        })
    }

    /// Stop probing (the daemon is stopping) and wait until every probe task and the runtime
    /// are gone.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let thread = self.thread;
        if let Ok(Err(_)) = tokio::task::spawn_blocking(move || thread.join()).await {
            tracing::warn!("the probe runtime thread panicked while stopping");
        }
    }
}

async fn run(targets: Vec<Target>, tx: mpsc::Sender<Event>, cancel: CancellationToken) {
    let (ptx, mut prx) = mpsc::channel(4096);
    let scheduler = Scheduler::start(targets, ptx, cancel.child_token());
    let forward_tx = tx.clone();
    let forward = tokio::spawn(async move {
        while let Some(r) = prx.recv().await {
            if forward_tx.send(Event::Probe(Box::new(r))).await.is_err() {
                break;
            }
        }
    });
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => if tx.send(Event::Flush).await.is_err() { break },
        }
    }
    scheduler.shutdown().await;
    let _ = forward.await;
}
