//! Cluster mode on etcd: three niledr instances (one per site) on three real etcd members.
//! One leader acts; followers answer reads from the shared journal and forward writes; a
//! leader SIGKILLed in the middle of a failover is replaced within the lease and the new
//! leader finishes the execution from the journal, promoting PostgreSQL exactly once.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use niledr_tests::cluster::{ClusterWorld, start_cluster};
use niledr_tests::dns::soa_serial;
use niledr_tests::scenario::{approve, propose};
use niledr_tests::wait_until;
use serde_json::json;

#[path = "common/etcd_store.rs"]
mod etcd_store;

const FAILOVER: &str = "failover-khartoum-to-port-sudan";
const TTL: Duration = Duration::from_secs(3);

/// Kill Khartoum's PostgreSQL after writes the standby has, and wait until every instance
/// sees it down.
fn kill_khartoum(w: &ClusterWorld) -> Result<()> {
    w.topo.postgres_primary().write_rows(100)?;
    let any = &w.instances[0].niledr;
    any.wait_service("port-sudan-postgres", Duration::from_secs(20), |s| {
        s["replication"]["lag_bytes"] == 0
    })?;
    w.topo.postgres_primary().kill()?;
    for i in &w.instances {
        i.niledr
            .wait_service("khartoum-postgres", Duration::from_secs(15), |s| {
                s["status"] == "down"
            })?;
    }
    Ok(())
}

/// Propose through one follower, approve through the other follower and the leader.
fn propose_and_approve_around(w: &ClusterWorld, leader: usize) -> Result<String> {
    let followers: Vec<usize> = (0..w.instances.len()).filter(|i| *i != leader).collect();
    let ex = propose(
        &w.instances[followers[0]].niledr,
        FAILOVER,
        &w.people.operator,
    )?;
    let id = ex["id"].as_str().context("id")?.to_string();
    let digest = ex["plan_digest"].as_str().context("digest")?.to_string();
    for (idx, token) in [(followers[1], &w.people.ic), (leader, &w.people.lead)] {
        let (status, body) = approve(&w.instances[idx].niledr, &id, token, &digest)?;
        assert_eq!(
            status, 200,
            "approving through {}: {body:#}",
            w.instances[idx].name
        );
    }
    Ok(id)
}

/// Wait for execution `id` to end through `via`: it succeeded and kept both approvals.
fn succeeded_with_both_approvals(
    via: &niledr_tests::daemon::Niledr,
    id: &str,
) -> Result<serde_json::Value> {
    let done = via.wait_execution(
        id,
        Duration::from_secs(90),
        &["succeeded", "failed", "needs_operator"],
    )?;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(
        done["approvals"].as_array().map(Vec::len),
        Some(2),
        "both approvals kept: {done:#}"
    );
    Ok(done)
}

fn promoted_once(w: &ClusterWorld, serial_before: u64) -> Result<()> {
    niledr_tests::scenario::promoted_exactly_once(&w.topo, serial_before)
}

#[test]
fn one_leader_acts_and_followers_forward_writes_and_read_the_shared_journal() -> Result<()> {
    let w = start_cluster(TTL, &[])?;
    let leader = w.wait_leader(Duration::from_secs(10), None)?;
    // Every member publishes its own view of every service under its lease.
    let view =
        w.instances[leader]
            .niledr
            .wait_json("/api/v1/cluster", Duration::from_secs(15), |v| {
                v["members"].as_array().is_some_and(|m| {
                    m.len() == 3
                        && m.iter()
                            .all(|m| m["services"]["khartoum-postgres"]["status"] == "up")
                })
            })?;
    println!("cluster view: {view:#}");
    assert_eq!(view["mode"], "cluster");
    let members = view["members"].as_array().context("members")?;
    assert_eq!(members.len(), 3, "{view:#}");
    for m in members {
        assert_eq!(
            m["services"]["khartoum-postgres"]["status"], "up",
            "every member publishes its own view: {m:#}"
        );
        assert_eq!(m["leader"], m["name"] == view["this"], "{m:#}");
    }
    let serial_before = soa_serial(w.topo.dns_servers()[0])?;

    kill_khartoum(&w)?;
    let id = propose_and_approve_around(&w, leader)?;
    let follower = w.other_than(leader)?;
    let done = succeeded_with_both_approvals(follower, &id)?;
    promoted_once(&w, serial_before)?;

    // The journal lives in etcd: one execution record, read the same by every instance.
    let records = w.etcd.get_prefix("/niledr/executions/")?;
    assert_eq!(records.len(), 1, "{records:?}");
    for i in &w.instances {
        let (status, ex) = i.niledr.get(&format!("/api/v1/executions/{id}"))?;
        assert_eq!((status, &ex["state"]), (200, &done["state"]), "{}", i.name);
        let (status, audit) = i.niledr.get("/api/v1/audit/verify")?;
        assert_eq!(status, 200, "audit on {}: {audit:#}", i.name);
    }
    // A console session signed in at a follower acts nowhere: the follower does not forward
    // its write (the leader would answer 401 and sign the person out) but names the leader's
    // console. Nothing is applied.
    let (cookie, csrf) = niledr_tests::http::console_session(follower.listen, &w.people.ic)?;
    let (status, _, body) = niledr_tests::http::raw_request(
        follower.listen,
        "POST",
        &format!("/api/v1/executions/{id}/cancel"),
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
        ],
        "{}",
    )?;
    assert_eq!(status, 409, "{body}");
    let leader_name = &w.instances[leader].name;
    assert!(
        body.contains(&format!("follows the leader {leader_name}"))
            && body.contains("console at http"),
        "{body}"
    );
    // No other instance ever took the leader key during the failover.
    let log_of = |i: usize| std::fs::read_to_string(&w.instances[i].niledr.log).unwrap_or_default();
    for i in (0..3).filter(|i| *i != leader) {
        assert!(
            !log_of(i).contains("now leads the cluster"),
            "{} never led",
            w.instances[i].name
        );
    }
    Ok(())
}

#[test]
fn a_leader_killed_mid_failover_is_replaced_and_the_execution_finishes_exactly_once() -> Result<()>
{
    // cutover-db waits 4 s before acting: the leader dies while it is in flight (in doubt).
    let env = [
        ("NILEDR_FAILPOINTS", "delay:cutover-db"),
        ("NILEDR_FAILPOINT_DELAY_MS", "4000"),
    ];
    let mut w = start_cluster(TTL, &env)?;
    let leader = w.wait_leader(Duration::from_secs(10), None)?;
    let serial_before = soa_serial(w.topo.dns_servers()[0])?;
    kill_khartoum(&w)?;
    let id = propose_and_approve_around(&w, leader)?;
    let follower = w.other_than(leader)?;
    follower.wait_json(
        &format!("/api/v1/executions/{id}"),
        Duration::from_secs(60),
        |ex| niledr_tests::scenario::step(ex, "cutover-db")["state"] == "running",
    )?;

    let killed = Instant::now();
    w.kill(leader)?;
    let next = w.wait_leader(TTL * 4, Some(leader))?;
    let takeover = killed.elapsed();
    println!(
        "TAKEOVER {} -> {} in {:.2} s (lease TTL {} s)",
        w.instances[leader].name,
        w.instances[next].name,
        takeover.as_secs_f64(),
        TTL.as_secs()
    );
    let new = &w.instances[next].niledr;
    let done = succeeded_with_both_approvals(new, &id)?;
    let timeline = done["timeline"].to_string();
    assert!(
        timeline.contains("in_doubt"),
        "the in-flight step was re-checked: {timeline}"
    );
    promoted_once(&w, serial_before)?;
    let (status, audit) = new.get("/api/v1/audit/verify")?;
    assert_eq!(status, 200, "{audit:#}");
    let (_, view) = new.get("/api/v1/cluster")?;
    assert_eq!(
        view["members"].as_array().map(Vec::len),
        Some(2),
        "the dead leader's record expired: {view:#}"
    );

    // The killed instance comes back as a follower: it does not take the key back.
    w.restart(leader)?;
    let still = w.wait_leader(Duration::from_secs(10), None)?;
    assert_eq!(still, next);
    wait_until(Instant::now() + Duration::from_secs(10), || {
        Ok(
            w.instances[leader].niledr.get("/api/v1/cluster")?.1["members"]
                .as_array()
                .is_some_and(|m| m.len() == 3),
        )
    })?;
    // One live topology on every member (the leader decides; the restarted one adopts it).
    for i in &w.instances {
        wait_until(Instant::now() + Duration::from_secs(15), || {
            let (_, t) = i
                .niledr
                .get_json_as("/api/v1/topology", Some(&w.people.viewer))?;
            let roles: Vec<(String, String)> = t["sites"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| (s["site"].to_string(), s["current_role"].to_string()))
                .collect();
            Ok(t["postgres_primary"]["service"] == "port-sudan-postgres"
                && roles.contains(&("\"port-sudan\"".into(), "\"primary\"".into()))
                && roles.contains(&("\"khartoum\"".into(), "\"hot_standby\"".into())))
        })
        .map_err(|_| anyhow::anyhow!("{} disagrees on the live topology", i.name))?;
    }
    Ok(())
}

#[test]
fn losing_one_etcd_member_loses_nothing_and_fences_nothing() -> Result<()> {
    let w = start_cluster(TTL, &[])?;
    let serial_before = soa_serial(w.topo.dns_servers()[0])?;
    w.etcd.member("etcd-k")?.component.kill()?;
    let killed = Instant::now();
    // Three lease TTLs on two members: Khartoum's primary stays writable for the application
    // (no self-fence), and the instances always agree on a leader.
    while killed.elapsed() < TTL * 3 {
        w.topo
            .postgres_primary()
            .psql_app("SELECT 1")
            .context("the application lost Khartoum after one etcd member died")?;
        assert!(!w.topo.postgres_primary().is_read_only()?);
        std::thread::sleep(Duration::from_millis(250));
    }
    let leader = w.wait_leader(Duration::from_secs(10), None)?;
    for i in &w.instances {
        let log = std::fs::read_to_string(&i.niledr.log)?;
        assert!(!log.contains("SELF-FENCED"), "{} fenced itself", i.name);
    }
    // The journal still works end to end on two members.
    kill_khartoum(&w)?;
    let id = propose_and_approve_around(&w, leader)?;
    succeeded_with_both_approvals(&w.instances[leader].niledr, &id)?;
    promoted_once(&w, serial_before)?;
    w.etcd.member("etcd-k")?.component.start()?;
    w.etcd.wait_healthy(Duration::from_secs(30))?;
    for i in &w.instances {
        let (status, audit) = i.niledr.get("/api/v1/audit/verify")?;
        assert_eq!(status, 200, "{}: {audit:#}", i.name);
    }
    Ok(())
}

#[test]
fn a_write_carrying_a_deposed_leaders_token_is_refused_and_applies_nothing() -> Result<()> {
    use niledr_orchestrator::store::{AuditEvent, NotLeader, SharedStore};

    let on = etcd_store::StoreOnEtcd::start(TTL)?;
    let store = &on.store;
    // This instance holds the key: its guarded writes apply.
    on.lead()?;
    store.set_meta("probe", "first")?;
    store.save_standing_approvals(
        "d",
        &[],
        vec![AuditEvent {
            actor: "t",
            action: "first",
            detail: json!({}),
        }],
    )?;
    let audit_before = on.audit_len()?;

    on.depose()?;
    let e = store
        .set_meta("probe", "second")
        .expect_err("a deposed leader's write applied");
    assert!(e.downcast_ref::<NotLeader>().is_some(), "{e:#}");
    assert_eq!(
        on.cluster.leadership.token(),
        None,
        "the refusal deposed this instance"
    );
    let e = store
        .save_standing_approvals(
            "d",
            &[],
            vec![AuditEvent {
                actor: "t",
                action: "second",
                detail: json!({}),
            }],
        )
        .expect_err("a write without the key applied");
    assert!(e.downcast_ref::<NotLeader>().is_some(), "{e:#}");
    assert!(
        store.next_generation().is_err(),
        "no generation without the key"
    );
    // Nothing of the refused writes reached etcd: the value and the audit chain are as before.
    assert_eq!(store.meta("probe")?.as_deref(), Some("first"));
    assert_eq!(on.audit_len()?, audit_before);
    Ok(())
}
