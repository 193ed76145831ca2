#!/usr/bin/env bash
# Brings up the NileCare three-site sandbox on loopback (khartoum 127.0.1.1, port-sudan
# 127.0.2.1, dr-cold 127.0.3.1, DNS 127.0.9.1) with niledr watching it; the console and API
# are at http://127.0.0.1:8080/ (with --cluster: three etcd members and three niledr instances,
# each at http://<site address>:8080/). Ctrl-C tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cargo build --workspace --bins --locked
exec target/debug/niledr-sandbox up --niledr target/debug/niledr "$@"
