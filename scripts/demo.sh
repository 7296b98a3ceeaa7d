#!/usr/bin/env bash
# The demo in one command: install what is missing, build, and start a 3-member cluster with `warden up`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
exec node bin/warden.js up "$@"
