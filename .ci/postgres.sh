#!/usr/bin/env bash
# PostgreSQL's binaries for the registry tests. The suite itself starts a private throwaway server from
# them (tests/postgres.py: initdb into a temporary directory, a free loopback port, fsync off; as the
# `postgres` user when run as root) and stops it at the end, so nothing else is needed.
#
# Idempotent on a fresh Debian machine: installs Debian's postgresql when no initdb is found.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    say "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
    exit 1
fi
say "installing postgresql"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq postgresql >&2
