#!/usr/bin/env bash
# A private PostgreSQL server for the registry tests (tests/pool/unit/test_pool_registry.py).
#
# Idempotent on a fresh Debian machine: installs Debian's postgresql when it is missing,
# runs initdb when the data directory is empty, starts the server when it is not running,
# and creates the role and the database when they are missing. Progress goes to stderr;
# stdout is one line to eval:
#     eval "$(.ci/postgres.sh)"   # sets HAMR_TEST_POSTGRES_URL
# Settings (environment): HAMR_PG_PORT (55432), HAMR_PG_DATA (/tmp/hamr-pgdata),
# HAMR_PG_SOCKET (/tmp).
set -euo pipefail

PORT=${HAMR_PG_PORT:-55432}
DATA=${HAMR_PG_DATA:-/tmp/hamr-pgdata}
SOCKET=${HAMR_PG_SOCKET:-/tmp}
ROLE=hamr
PASSWORD=hamr-test
DATABASE=hamr_test

say() { echo "postgres.sh: $*" >&2; }

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        say "PostgreSQL is not installed and installing it needs root (apt-get install postgresql)"
        exit 1
    fi
    say "installing postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)

# initdb and the server refuse to run as root: run them as the postgres user then.
if [ "$(id -u)" -eq 0 ]; then
    as_owner() { su postgres -s /bin/bash -c "$(printf '%q ' "$@")"; }
    OWNER=postgres
else
    as_owner() { "$@"; }
    OWNER=$(id -un)
fi

if [ ! -s "$DATA/PG_VERSION" ]; then
    say "initdb $DATA"
    mkdir -p "$DATA"
    chown "$OWNER" "$DATA"
    chmod 700 "$DATA"
    # The superuser logs in over the socket as its own OS user; the test role by password over TCP.
    as_owner "$BIN/initdb" -D "$DATA" --auth-local=peer --auth-host=scram-sha-256 >&2
fi

if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    say "starting the server on 127.0.0.1:$PORT (log: $DATA.log)"
    touch "$DATA.log"
    chown "$OWNER" "$DATA.log"
    # A throwaway test server: durability off (no fsync), so DDL and commits are fast.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA.log" -w \
        -o "-p $PORT -k $SOCKET -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >&2
fi

sql() { as_owner "$BIN/psql" -h "$SOCKET" -p "$PORT" -d postgres -U "$OWNER" -v ON_ERROR_STOP=1 -qtAc "$1"; }
if [ "$(sql "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" != 1 ]; then
    say "creating role $ROLE"
    sql "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ "$(sql "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" != 1 ]; then
    say "creating database $DATABASE"
    sql "CREATE DATABASE $DATABASE OWNER $ROLE"
fi

echo "export HAMR_TEST_POSTGRES_URL=postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DATABASE"
