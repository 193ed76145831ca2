//! The cluster as the API shows it (`GET /api/v1/cluster`), and which requests a follower
//! forwards to the leader.

use std::time::Instant;

use niledr_web::forward::Forward;
use niledr_web::types::{ClusterLeaderView, ClusterMemberView, ClusterView, MemberObservationView};

use super::Cluster;

pub fn cluster_view(c: &Cluster) -> ClusterView {
    let v = c.view();
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    ClusterView {
        mode: "cluster".into(),
        this: Some(c.config.name.clone()),
        site: Some(c.config.site.clone()),
        is_leader: c.is_leader(),
        leader: v.leader.map(|l| ClusterLeaderView {
            name: l.name,
            site: l.site,
            advertise: l.advertise,
            since: l.since,
            token: l.token,
        }),
        lease_ttl_ms: Some(ms(c.config.lease_ttl)),
        // The lease is surely alive on the etcd side until its last renewal plus the TTL.
        lease_remaining_ms: v
            .renewed_at
            .map(|t| ms((t + c.config.lease_ttl).saturating_duration_since(Instant::now()))),
        last_contact_ms: v.last_contact.map(|t| ms(t.elapsed())),
        last_error: v.last_error,
        members: v
            .members
            .into_iter()
            .map(|m| ClusterMemberView {
                age_ms: now_ms - m.at_ms,
                name: m.name,
                site: m.site,
                advertise: m.advertise,
                leader: m.leader,
                at: m.at,
                services: m
                    .services
                    .into_iter()
                    .map(|(id, o)| {
                        (
                            id,
                            MemberObservationView {
                                status: o.status,
                                ok: o.ok,
                                summary: o.summary,
                                in_recovery: o.in_recovery,
                                wal_receiver: o.wal_receiver,
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A follower answers reads itself (the health it sees, the journal in etcd) and forwards
/// every write, and plans (the leader's engine checks readiness), to the leader.
pub fn forward(c: &Cluster, method: &str, path: &str) -> Forward {
    // Console sessions live in the memory of the instance that granted them.
    if c.is_leader() || !path.starts_with("/api/v1/") || path == "/api/v1/session" {
        return Forward::Local;
    }
    let read = matches!(method, "GET" | "HEAD");
    if read && !path.ends_with("/plan") {
        return Forward::Local;
    }
    match c.view().leader {
        Some(l) => Forward::To {
            url: l.advertise,
            leader: l.name,
        },
        None => Forward::NoLeader(
            "no niledr instance leads the cluster right now (an election is under way or etcd has no quorum); retry in a few seconds".into(),
        ),
    }
}
