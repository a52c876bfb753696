#!/usr/bin/env bash
# Start the Docker engine for the tests if it is not answering (root only; idempotent).
# No default bridge network: test containers use the host's loopback (network_mode=host) or none.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
  echo "note: cannot start dockerd (not root or not installed); docker tests will skip" >&2
  exit 0
fi
nohup dockerd --bridge=none --iptables=false --ip-masq=false >/var/log/fleetdeck-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "warning: dockerd did not answer within 30 s; see /var/log/fleetdeck-dockerd.log" >&2
