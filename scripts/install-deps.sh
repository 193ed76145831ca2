#!/usr/bin/env bash
# Installs, only if missing, the Debian packages the real-server harness (crate
# niledr-tests) and the niledr-sandbox binary need: PostgreSQL 15 server + client, Redis
# server + tools, Knot DNS (knotd, knsupdate, kdig), nginx, pgbouncer, etcd (cluster mode),
# protoc + protobuf includes (the etcd-client crate's build), and for the network-namespace
# tests (tests/src/netns.rs) ip, iptables and nsenter, for the console's browser tests
# (tests/src/browser.rs) chromium and chromium-driver, and Alertmanager (the pager-hook
# tests, tests/src/alertmanager.rs). Idempotent: with
# everything present it changes nothing and runs no `apt-get update`.
#
# Debian's packages start system services on install (a PostgreSQL cluster on 5432, Redis
# on 6379, Knot on 53, nginx on 80) that would hold the sandbox's ports; this script keeps
# them from starting, stops any that run, and checks the ports with `ss`.
#
# Usage: scripts/install-deps.sh   (as root, or via sudo)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { printf 'install-deps: %s\n' "$*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then
        exec sudo -E "$0" "$@"
    fi
    log "must run as root"
    exit 1
fi

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin

# "test that shows it is there" -> package that provides it
declare -a CHECKS=(
    "test -x $PG_BIN/initdb -a -x $PG_BIN/postgres -a -x $PG_BIN/pg_basebackup|postgresql-$PG_VERSION"
    "test -x $PG_BIN/psql|postgresql-client-$PG_VERSION"
    "command -v redis-server|redis-server"
    "command -v redis-cli|redis-tools"
    "command -v knotd|knot"
    "command -v knsupdate && command -v kdig|knot-dnsutils"
    "command -v nginx|nginx-light"
    "command -v pgbouncer|pgbouncer"
    "command -v ss && command -v ip|iproute2"
    "command -v etcd && command -v etcdctl|etcd-server"
    "command -v etcdctl|etcd-client"
    # promtool: `promtool check metrics` / `check rules` / `test rules` (tests/tests/metrics.rs)
    "command -v promtool|prometheus"
    "command -v protoc|protobuf-compiler"
    "test -f /usr/include/google/protobuf/descriptor.proto|libprotobuf-dev"
    "command -v iptables|iptables"
    "command -v nsenter|util-linux"
    "python3 -c 'import ensurepip, venv'|python3-venv"
    "test -x /usr/bin/chromium|chromium"
    "command -v chromedriver|chromium-driver"
    "command -v prometheus-alertmanager|prometheus-alertmanager"
)

missing=()
for entry in "${CHECKS[@]}"; do
    check=${entry%|*}
    pkg=${entry##*|}
    if ! eval "$check" >/dev/null 2>&1; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    # Keep maintainer scripts from starting services during the install.
    created_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    trap '[[ $created_policy -eq 1 ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    # No default cluster on 5432: the harness runs its own initdb.
    if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
        mkdir -p /etc/postgresql-common
        printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.conf
    fi
    apt-get update -qq
    # nginx-light is gone from newer Debian releases: fall back to nginx.
    if [[ " ${missing[*]} " == *" nginx-light "* ]] && ! apt-cache show nginx-light >/dev/null 2>&1; then
        missing=("${missing[@]/nginx-light/nginx}")
    fi
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"
else
    log "all packages present"
fi

# Stop (and disable) Debian's own services if they run: the sandbox uses their ports.
stop_service() {
    local svc=$1
    if [[ -d /run/systemd/system ]]; then
        systemctl stop "$svc" >/dev/null 2>&1 || true
        systemctl disable "$svc" >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/$svc ]]; then
        if service "$svc" status >/dev/null 2>&1; then
            log "stopping system service $svc"
            service "$svc" stop >/dev/null 2>&1 || true
        fi
        update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
}
if command -v pg_lsclusters >/dev/null; then
    # columns: version cluster port status owner data-dir log
    pg_lsclusters --no-header 2>/dev/null | while read -r ver cluster _port status _rest; do
        if [[ $status == online* ]]; then
            log "stopping PostgreSQL cluster $ver/$cluster"
            pg_ctlcluster "$ver" "$cluster" stop -m fast || true
        fi
        conf=/etc/postgresql/$ver/$cluster/start.conf
        if [[ -f $conf ]]; then echo manual >"$conf"; fi
    done || true
fi
for svc in postgresql redis-server knot nginx pgbouncer etcd prometheus-alertmanager; do
    stop_service "$svc"
done
# Debian's prometheus package (installed for promtool) starts a server on :9090.
stop_service prometheus

# The harness finds the PostgreSQL binaries itself (not via PATH); check they are there.
for b in initdb postgres pg_basebackup psql; do
    if [[ ! -x $PG_BIN/$b ]]; then
        log "missing $PG_BIN/$b"
        exit 1
    fi
done

# Nothing may listen on the sandbox ports on a wildcard address (that would block the site
# addresses 127.0.1.1, 127.0.2.1, 127.0.9.x). Listeners on the site addresses themselves
# are a running niledr-sandbox, which is fine.
collisions=$(ss -Hltnu 2>/dev/null | awk '{print $5}' |
    grep -E '^(0\.0\.0\.0|\*|\[::\]):(5432|6379|53|80|6432|2379|2380)$' | sort -u || true)
if [[ -n $collisions ]]; then
    log "these wildcard listeners collide with the sandbox ports:"
    ss -Hltnup 2>/dev/null | grep -E '(0\.0\.0\.0|\*|\[::\]):(5432|6379|53|80|6432|2379|2380)\b' >&2 || true
    exit 1
fi
# PyPI tools the tests run, in a venv under target/ (never the system Python): schemathesis
# fuzzes the live API against its OpenAPI document (tests/tests/openapi.rs).
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=$REPO/target/pyvenv
SCHEMATHESIS_VERSION=4.32.5
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

log "ok: PostgreSQL $PG_VERSION in $PG_BIN, redis, knot, nginx, pgbouncer, etcd, protoc ready; sandbox ports free"
