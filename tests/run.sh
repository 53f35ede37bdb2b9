#!/usr/bin/env bash
# `make test`: start PostgreSQL, run the whole suite against it and SQLite, stop PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
export CLAWDET_TEST_POSTGRES_URL
CLAWDET_TEST_POSTGRES_URL=$(bash tests/postgres.sh start)
trap 'bash tests/postgres.sh stop' EXIT
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
GO=$(command -v go || echo /usr/local/go/bin/go)
(cd toolchain/standin-providers && GOFLAGS=-mod=mod GOWORK=off "$GO" test ./...)
.venv/bin/ruff check . && .venv/bin/ruff format --check . || { echo "ruff found problems: run .venv/bin/ruff check --fix . && .venv/bin/ruff format ." >&2; exit 1; }
.venv/bin/python -m pytest "$@"
