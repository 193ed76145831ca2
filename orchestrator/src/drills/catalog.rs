//! Drill definitions as the daemon holds them: loaded from the configured `[drills] dirs` and
//! validated at start (like runbooks), with their upcoming runs in the drill's time zone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use niledr_drills::{Drill, RunbookInfo, Slot};
use niledr_runbooks::{Action, Catalog, Runbook};
use niledr_web::types::{DrillSlotView, DrillView};

use crate::config::Config;

pub struct LoadedDrill {
    pub drill: Drill,
    pub file: PathBuf,
    /// The runbooks as loaded, for re-checking the file before a run.
    pub runbooks: Vec<RunbookInfo>,
}

/// What drill validation needs to know of each loaded runbook.
pub fn runbook_infos<'a>(runbooks: impl IntoIterator<Item = &'a Runbook>) -> Vec<RunbookInfo> {
    runbooks
        .into_iter()
        .map(|r| RunbookInfo {
            name: r.name.clone(),
            manual_steps: r
                .steps
                .iter()
                .filter(|s| matches!(s.action, Action::ManualConfirm { .. }))
                .map(|s| s.id.clone())
                .collect(),
        })
        .collect()
}

/// The drill file as it is on disk now (it may have been edited since niledr loaded it: an
/// edited file has a new digest, so standing approvals of the old one stop counting).
pub fn reload(l: &LoadedDrill, catalog: &Catalog) -> Result<Drill> {
    let text = std::fs::read_to_string(&l.file)
        .with_context(|| format!("cannot read drill {}", l.file.display()))?;
    niledr_drills::parse_drill(&l.file, &text, catalog, &l.runbooks)
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Every `*.toml` in the drill directories, checked against the catalog and the runbooks.
pub fn load_drills(
    config: &Config,
    catalog: &Catalog,
    runbooks: &[RunbookInfo],
) -> Result<BTreeMap<String, LoadedDrill>> {
    let mut out: BTreeMap<String, LoadedDrill> = BTreeMap::new();
    for dir in &config.drills.dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read drill directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read drill {}", file.display()))?;
            let drill = niledr_drills::parse_drill(&file, &text, catalog, runbooks)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if let Some(prev) = out.get(&drill.name) {
                bail!(
                    "{}: drill name {:?} is also used by {}",
                    file.display(),
                    drill.name,
                    prev.file.display()
                );
            }
            out.insert(
                drill.name.clone(),
                LoadedDrill {
                    drill,
                    file,
                    runbooks: runbooks.to_vec(),
                },
            );
        }
    }
    Ok(out)
}

/// The API's view of a drill, with its next `n` scheduled slots (due or skipped, and why).
pub fn drill_view(l: &LoadedDrill, now: jiff::Timestamp, n: usize) -> DrillView {
    let d = &l.drill;
    let upcoming = match d.schedule {
        None => Vec::new(),
        Some(_) => niledr_drills::next_runs(d, now, n)
            .map(|slots| {
                slots
                    .into_iter()
                    .map(|s| match s {
                        Slot::Due { at } => DrillSlotView {
                            at: at.to_string(),
                            due: true,
                            skipped_because: None,
                        },
                        Slot::Skipped { at, reason } => DrillSlotView {
                            at: at.to_string(),
                            due: false,
                            skipped_because: Some(reason),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    DrillView {
        name: d.name.clone(),
        description: d.description.clone(),
        file: l.file.display().to_string(),
        runbook: d.runbook.clone(),
        schedule: d.schedule.clone(),
        timezone: d.timezone.clone(),
        approval: format!("{:?}", d.approval).to_lowercase(),
        digest: d.digest.clone(),
        scenario: crate::api::drills::scenario_view(&d.scenario),
        objectives: crate::api::drills::objectives_view(&d.objectives),
        upcoming,
        last_verdict: None,
        last_run: None,
        standing_approvals: Vec::new(),
        standing_approved: false,
        standing_needs: None,
    }
}
