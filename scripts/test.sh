#!/usr/bin/env bash
# Install everything the tests need, then run them. Extra arguments go to pytest.
#   ./scripts/test.sh                 # the whole suite
#   ./scripts/test.sh tests/sdk -x    # a part
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup-venv.sh dev
exec .venv/bin/python -m pytest "$@"
