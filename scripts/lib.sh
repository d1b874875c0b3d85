# Shared shell helpers for tenant_guard's scripts. Source it; do not run it.
# shellcheck shell=bash

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
PG_BIN=/usr/lib/postgresql/$PG_MAJOR/bin
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGRX_VERSION=0.18.1

# The OS user that owns throwaway clusters: PostgreSQL refuses to run as root.
if [ "$(id -u)" = 0 ]; then PG_OS_USER=${PG_OS_USER:-postgres}; else PG_OS_USER=$(id -un); fi

say() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31mERROR: %s\033[0m\n' "$*" >&2; exit 1; }

# Run a command as the cluster's OS user.
as_pg_user() {
    if [ "$(id -un)" = "$PG_OS_USER" ]; then "$@"; else runuser -u "$PG_OS_USER" -- "$@"; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# git on this checkout, even when it belongs to another user (CI checkouts may).
repo_git() { git -C "$REPO" -c safe.directory="$REPO" "$@"; }
# Released versions are built and checked from history: a shallow or missing history has none.
has_full_history() { [ "$(repo_git rev-parse --is-shallow-repository 2>/dev/null)" = false ]; }
