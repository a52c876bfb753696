#!/usr/bin/env bash
# Install and start the system services the tests need (as root; skipped with a note otherwise).
# Each feature that needs a service adds its step here, idempotently.
set -euo pipefail

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "note: not root, skipping system packages ($*); tests that need them will skip" >&2
    return 1
  fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root "${missing[@]}" || return 0
  if [ ! -f /tmp/.fleetdeck-apt-updated ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && touch /tmp/.fleetdeck-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_install tmux git
# fleet: real SSH test hosts (tests/fleet/sshd.py) and a tiny busybox image for images sync
apt_install openssh-server busybox-static
# agents: a real Docker engine (no default bridge) and debootstrap for the local Python job image
apt_install docker.io debootstrap
bash "$(dirname "$0")/start-dockerd.sh"
