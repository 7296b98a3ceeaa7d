#!/usr/bin/env bash
# The whole test suite: install what is missing, build, typecheck, lint, then the unit tests (pure
# logic, fakes) and the integration tests (real etcd and PostgreSQL 15 on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== typecheck"; npx tsc --noEmit -p .
echo "== lint"; npx eslint .
echo "== tests"
# One file at a time: the cluster tests start real processes and would slow each other on 2 cores.
# Node 20's runner takes no globs: list the files (unit tests first).
mapfile -t files < <(find src -name '*.test.ts' | sort; find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=1 --test-reporter=spec "${files[@]}"
