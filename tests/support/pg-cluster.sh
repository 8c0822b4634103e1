#!/usr/bin/env bash
# Throwaway PostgreSQL cluster in a temp dir for the test suite (Debian package postgresql).
# Usage: pg-cluster.sh start DIR PORT   |   pg-cluster.sh stop DIR   (start after stop restarts it)
# As root the cluster runs as the 'postgres' system user (initdb/postgres refuse to run as root);
# as any other user it runs as that user. Auth: trust, superuser 'postgres', socket + 127.0.0.1:PORT only.
# Durability is switched off (fsync/synchronous_commit/full_page_writes) because it is a test database.
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
CMD=$1; DIR=$(realpath -m "$2"); PORT=${3:-15432}
if [ "$(id -u)" = 0 ]; then AS=(setpriv --reuid=postgres --regid=postgres --init-groups); else AS=(); fi
case "$CMD" in
start)
  mkdir -p "$DIR"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
  # Start again after a stop: the cluster is there already.
  [ -d "$DIR/data" ] || "${AS[@]}" "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$DIR/initdb.log"
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 start -o \
    "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" >/dev/null
  echo "postgresql://postgres@127.0.0.1:$PORT/postgres"   # DSN; psql -h 127.0.0.1 -p PORT -U postgres
  ;;
stop)
  "${AS[@]}" "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
  ;;
esac
