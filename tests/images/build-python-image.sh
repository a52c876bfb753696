#!/usr/bin/env bash
# Build the local Python image the Docker tests run jobs in (no registry is reachable):
# Debian bookworm minbase with python3 and python3-venv, and a venv /opt/fleetdeck holding the
# fleetdeck SDK's runtime dependencies (the tests add the SDK itself from a freshly built wheel).
# Built once per machine (~2 min); skipped when the image exists. Root only.
# Usage: tests/images/build-python-image.sh [IMAGE]
set -euo pipefail
image=${1:-fleetdeck-test-python:bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "building $image needs root (debootstrap)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is not installed" >&2; exit 1; }
work=$(mktemp -d /var/tmp/fleetdeck-image.XXXXXX)
trap 'umount "$work/rootfs/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,openssh-server,ca-certificates \
  bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
# The venv's packages are installed by the host's pip (same Python minor and glibc as bookworm),
# which has the host's proxy CA, pip cache and wheelhouse; the image's python then owns the venv.
chroot "$work/rootfs" python3 -m venv /opt/fleetdeck
site=$(echo "$work"/rootfs/opt/fleetdeck/lib/python3*/site-packages)
host_python=${PYTHON:-$(dirname "$0")/../../.venv/bin/python}
"$host_python" -m pip install --quiet --disable-pip-version-check --target "$site" \
  "httpx>=0.27" "psutil>=5.9" "nvidia-ml-py>=12" "gitpython>=3.1"
rm -rf "$work/rootfs/var/cache/apt/archives"/*.deb "$work/rootfs/var/lib/apt/lists"/*
tar -C "$work/rootfs" -c . | docker import \
  -c 'ENV PATH=/opt/fleetdeck/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' - "$image" >/dev/null
echo "built $image"
