//! `platform.mode`: publish the platform's degradation level for applications (forward), put
//! back the level this execution replaced (undo, a rollback), and readiness — side by side.

use std::time::Duration;

use niledr_runbooks::schema::platform_level_label;

use super::context::{StepContext, StepError, fatal};
use super::took;
use crate::actions::dns::mode::{self, Held, PlatformMode, Previous};

/// Set level `level` on behalf of execution `execution`, then wait until every authoritative
/// server answers it. Setting it again (a retry, a step in doubt) finds it set and only waits.
pub async fn set(
    ctx: &StepContext,
    level: u8,
    message: Option<&str>,
    execution: &str,
    timeout: Duration,
) -> Result<String, StepError> {
    let (dns, primary) = (ctx.dns()?, ctx.dns_primary()?);
    ctx.tsig()?;
    let record = &dns.platform_mode_record;
    let held = mode::read(primary, record).await.map_err(broken)?;
    let ours = |m: &PlatformMode| m.execution.as_deref() == Some(execution);
    let before = held.mode.as_ref().map_or(0, |m| m.level);
    let (new, already) = match &held.mode {
        Some(m) if ours(m) && m.level == level => (m.clone(), true),
        current => {
            // The level before this execution touched the record, so that any rollback of
            // this execution restores the level it found (not one it set itself).
            let previous = match current {
                Some(m) if ours(m) => m.previous.clone(),
                Some(m) => Some(Previous {
                    level: m.level,
                    execution: m.execution.clone(),
                    since: Some(m.since.clone()),
                }),
                None => Some(Previous {
                    level: 0,
                    execution: None,
                    since: None,
                }),
            };
            let new = PlatformMode {
                level,
                reason: message.unwrap_or(platform_level_label(level)).to_string(),
                since: jiff::Timestamp::now().to_string(),
                execution: Some(execution.to_string()),
                previous,
            };
            (new, false)
        }
    };
    if !already {
        write(ctx, &held, &new).await?;
    }
    // Done when the server updates go to answers it; the others get a short while to
    // transfer the zone and are reported, not waited on: telling the applications must not
    // hold a failover hostage to a secondary that is down with its site.
    let at_primary = mode::wait_all(&[primary], record, &new, timeout).await?;
    ctx.shared.platform.nudge();
    Ok(format!(
        "{record}: level {before} → {level}{} at {primary}{}; {}",
        if already { " (already set)" } else { "" },
        took(at_primary),
        secondaries(&dns.servers, primary, record, &new).await
    ))
}

/// How the other authoritative servers caught up (observed for a bounded while).
async fn secondaries(
    servers: &[std::net::SocketAddr],
    primary: std::net::SocketAddr,
    record: &str,
    want: &PlatformMode,
) -> String {
    let others: Vec<_> = servers.iter().copied().filter(|s| *s != primary).collect();
    if others.is_empty() {
        return "no other authoritative server".into();
    }
    match mode::wait_all(&others, record, want, SECONDARY_WAIT).await {
        Ok(d) => format!("{} other server(s) answer it{}", others.len(), took(d)),
        Err(e) => format!("not yet everywhere: {e:#}"),
    }
}

/// How long a step watches the secondaries take the new level.
const SECONDARY_WAIT: Duration = Duration::from_secs(2);

/// The inverse: if the record still holds what execution `execution` set, put back the level
/// it replaced; anything else (restored already, changed by someone since) is left alone.
pub async fn restore(ctx: &StepContext, execution: &str) -> Result<String, StepError> {
    let (dns, primary) = (ctx.dns()?, ctx.dns_primary()?);
    let record = &dns.platform_mode_record;
    let held = mode::read(primary, record).await.map_err(broken)?;
    let Some(m) = held
        .mode
        .as_ref()
        .filter(|m| m.execution.as_deref() == Some(execution))
    else {
        return Ok(format!(
            "{record} no longer holds this execution's level (level {}): left as it is",
            held.mode.as_ref().map_or(0, |m| m.level)
        ));
    };
    let p = m.previous.clone().unwrap_or(Previous {
        level: 0,
        execution: None,
        since: None,
    });
    let back = PlatformMode {
        level: p.level,
        reason: format!(
            "restored by the rollback of execution {execution}: {}",
            platform_level_label(p.level)
        ),
        since: jiff::Timestamp::now().to_string(),
        execution: p.execution,
        previous: None,
    };
    write(ctx, &held, &back).await?;
    let at_primary = mode::wait_all(&[primary], record, &back, Duration::from_secs(10)).await?;
    ctx.shared.platform.nudge();
    Ok(format!(
        "{record}: level {} → {} (restored) at {primary}{}; {}",
        m.level,
        back.level,
        took(at_primary),
        secondaries(&dns.servers, primary, record, &back).await
    ))
}

/// Ready: the key is accepted and the record, if any, is one niledr can read.
pub async fn ready(ctx: &StepContext) -> Result<String, String> {
    let key = super::dns::ready_tsig(ctx).await?;
    let dns = ctx.dns().map_err(|e| format!("{e:#}"))?;
    let primary = ctx.dns_primary().map_err(|e| e.error)?;
    let held = mode::read(primary, &dns.platform_mode_record)
        .await
        .map_err(|e| format!("{e:#}"))?;
    Ok(format!(
        "{key}; {} holds level {}",
        dns.platform_mode_record,
        held.mode.map_or(0, |m| m.level)
    ))
}

async fn write(ctx: &StepContext, held: &Held, new: &PlatformMode) -> Result<(), StepError> {
    let (dns, primary, key) = (ctx.dns()?, ctx.dns_primary()?, ctx.tsig()?);
    let applied = mode::swap(
        primary,
        &dns.zone,
        &dns.platform_mode_record,
        held,
        new,
        key,
    )
    .await
    .map_err(|e| {
        let error = format!("{e:#}");
        StepError {
            retryable: !error.contains("TSIG"),
            error,
            untouched: false,
        }
    })?;
    if applied {
        return Ok(());
    }
    // Someone changed the record between our read and our update: nothing changed; read
    // again on the retry.
    Err(StepError {
        error: format!(
            "{}: changed by someone else while this step ran (compare-and-swap refused); nothing was changed",
            dns.platform_mode_record
        ),
        retryable: true,
        untouched: true,
    })
}

/// A record in a shape niledr does not write is for a person to look at.
fn broken(e: anyhow::Error) -> StepError {
    let error = format!("{e:#}");
    if error.contains("fix it by hand") {
        fatal(error)
    } else {
        e.into()
    }
}
