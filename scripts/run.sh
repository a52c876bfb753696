#!/usr/bin/env bash
# Install fleetdeck and run the main job on this machine: an embedded server with demo experiments,
# then the control centre (the TUI) on it. Without a terminal it lists the experiments instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh all
exec .venv/bin/fleetdeck demo --open
