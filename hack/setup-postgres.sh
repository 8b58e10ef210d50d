#!/usr/bin/env bash
# Starts (installing it the first time) a private PostgreSQL server for the tests of
# the PostgreSQL store backend, and prints its DSN: the one line this script writes to
# stdout, so that `make test` can run
#
#   OMNIFLOW_TEST_POSTGRES_DSN="${OMNIFLOW_TEST_POSTGRES_DSN:-$(hack/setup-postgres.sh)}"
#
# The server is the tests' own: a cluster initialised in a per-user directory,
# listening on 127.0.0.1 only (plus a unix socket in that directory), with trust
# authentication, so that it needs no password and no system cluster. It is left
# running for the next run to reuse; `hack/setup-postgres.sh stop` stops it.
# fsync and synchronous_commit stay on: the store refuses to run without durable
# commits, and the tests check that promise rather than a weakened one.
#
# When no server binaries exist under /usr/lib/postgresql/*/bin, Debian's postgresql
# package is installed (apt-get, with sudo when not root). initdb and postgres refuse to
# run as root, so as root they run as the package's `postgres` system user.
#
# Environment:
#   OMNIFLOW_PG_PORT    loopback TCP port (default 55432)
#   OMNIFLOW_PG_DIR     cluster directory (default ${TMPDIR:-/tmp}/omniflow-pg-<uid>)
#   OMNIFLOW_PG_BINDIR  directory of initdb/pg_ctl/postgres (default: the newest
#                       /usr/lib/postgresql/<version>/bin)
set -euo pipefail

PORT="${OMNIFLOW_PG_PORT:-55432}"
DIR="${OMNIFLOW_PG_DIR:-${TMPDIR:-/tmp}/omniflow-pg-$(id -u)}"
DATA="$DIR/data"
DSN="postgres://postgres@127.0.0.1:${PORT}/postgres?sslmode=disable"

log() { echo "setup-postgres: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

case "$PORT" in
'' | *[!0-9]*) die "OMNIFLOW_PG_PORT must be a port number, got '$PORT'" ;;
esac

# bindir prints the newest Debian server binary directory, if any.
bindir() {
	if [ -n "${OMNIFLOW_PG_BINDIR:-}" ]; then
		[ -x "$OMNIFLOW_PG_BINDIR/postgres" ] || die "OMNIFLOW_PG_BINDIR=$OMNIFLOW_PG_BINDIR holds no postgres binary"
		echo "$OMNIFLOW_PG_BINDIR"
		return
	fi
	local d
	for d in /usr/lib/postgresql/*/bin; do
		if [ -x "$d/postgres" ]; then echo "$d"; fi # (an if: a false test must not fail the pipeline)
	done | sort -V | tail -n 1
}

install_postgres() {
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "PostgreSQL is not installed, and installing it needs root or sudo (or set OMNIFLOW_TEST_POSTGRES_DSN to a server of your own)"
		sudo=(sudo)
	fi
	command -v apt-get >/dev/null || die "PostgreSQL is not installed and this is not a Debian-like system: install it, set OMNIFLOW_PG_BINDIR, or set OMNIFLOW_TEST_POSTGRES_DSN"
	log "installing Debian's postgresql package (first run only)"
	# apt's progress goes to stderr: stdout carries only the DSN.
	"${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2 ||
		die "apt-get install postgresql failed"
}

BIN="$(bindir)"
if [ -z "$BIN" ]; then
	install_postgres
	BIN="$(bindir)"
	[ -n "$BIN" ] || die "the postgresql package is installed but no /usr/lib/postgresql/*/bin/postgres exists"
fi

# as_owner runs a command as the cluster's owner: the postgres system user when root
# (initdb and postgres refuse root), else the caller.
OWNER="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
	id -u postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (created by Debian's postgresql package) to own the test cluster"
	OWNER=postgres
	as_owner() { runuser -u postgres -- "$@"; }
else
	as_owner() { "$@"; }
fi

if [ "${1:-}" = "stop" ]; then
	if [ -f "$DATA/postmaster.pid" ] && (cd / && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1); then
		(cd / && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -s -w stop >&2)
	fi
	exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [stop]"

# The directory holds a superuser's trust-authenticated socket: it must be ours alone.
# In a shared /tmp someone else could have created it first, so check its owner.
if [ ! -d "$DIR" ]; then
	mkdir -p -m 0700 "$DIR"
	[ "$OWNER" = "$(id -un)" ] || chown "$OWNER:" "$DIR"
fi
[ "$(stat -c %U "$DIR")" = "$OWNER" ] || die "$DIR is owned by $(stat -c %U "$DIR"), not $OWNER: remove it or set OMNIFLOW_PG_DIR"
chmod 0700 "$DIR"
# The owner must reach the directory: a root TMPDIR under /root would not do.
as_owner test -w "$DIR" -a -x "$DIR" || die "$OWNER cannot write to $DIR: set OMNIFLOW_PG_DIR to a directory $OWNER can reach"
# Server tools resolve their own path from the working directory, which the postgres
# user may not be allowed to read (root's home, say).
cd "$DIR"

major="$("$BIN/postgres" --version | sed -nE 's/^[^0-9]*([0-9]+).*/\1/p')" # "postgres (PostgreSQL) 15.13 ..."
running() { [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }
running_port() { sed -n 4p "$DATA/postmaster.pid" 2>/dev/null; }

if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$major" ]; then
	# Throwaway test data from another major version: start over rather than upgrade.
	running && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -s -w stop >&2 || true
	log "cluster in $DATA is from PostgreSQL $(cat "$DATA/PG_VERSION"), the binaries are $major: recreating it"
	as_owner rm -rf "$DATA"
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
	as_owner rm -rf "$DATA" # an interrupted initdb leaves a directory initdb refuses
	log "initialising a test cluster in $DATA (PostgreSQL $major)"
	if ! as_owner env LC_ALL=C "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=trust >"$DIR/initdb.log" 2>&1; then
		cat "$DIR/initdb.log" >&2
		die "initdb failed (log above, also in $DIR/initdb.log)"
	fi
	# Trust only the private socket and 127.0.0.1: the server listens nowhere else.
	as_owner tee "$DATA/pg_hba.conf" >/dev/null <<-EOF
		# Written by hack/setup-postgres.sh: a private test server.
		local all all trust
		host  all all 127.0.0.1/32 trust
	EOF
fi

if running && [ "$(running_port)" != "$PORT" ]; then
	log "the test server runs on port $(running_port), restarting it on $PORT"
	as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -s -w stop >&2
fi

if ! running; then
	# pg_ctl redirects the server's stdin/stdout/stderr (to /dev/null and the log), so
	# the server does not hold the pipe of a $(...) that runs this script.
	if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -s -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $PORT -k '$DIR' -c max_connections=200" start >&2; then
		tail -n 20 "$DIR/server.log" >&2 || true
		die "the test server did not start (log above, also in $DIR/server.log); if port $PORT is taken, set OMNIFLOW_PG_PORT"
	fi
fi

# pg_ctl -w waited for the server's own readiness; this also proves the TCP listener.
for _ in $(seq 1 60); do
	if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres; then
		echo "$DSN"
		exit 0
	fi
	sleep 0.5
done
die "the test server in $DATA does not accept connections on 127.0.0.1:$PORT (see $DIR/server.log)"
