# Sourced by scripts/test and scripts/bench-server: unless
# SSHJIT_TEST_POSTGRES is set already, starts a private PostgreSQL cluster
# on a free loopback port (as the postgres account when run as root: it
# refuses to run as root), exports SSHJIT_TEST_POSTGRES for a role that may
# create databases, and stops and removes the cluster when the shell exits.
if [ -z "${SSHJIT_TEST_POSTGRES:-}" ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  pg_dir=$(mktemp -d /tmp/sshjit-pg.XXXXXX)
  as_pg=()
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$pg_dir"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U sshjit --no-sync >"$pg_dir/initdb.log" 2>&1 ||
    { cat "$pg_dir/initdb.log" >&2; exit 1; }
  pg_port=55432
  while (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; do pg_port=$((pg_port + 1)); done
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w -t 60 \
    -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null ||
    { cat "$pg_dir/server.log" >&2; exit 1; }
  stop_postgres() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  }
  trap stop_postgres EXIT
  export SSHJIT_TEST_POSTGRES="postgres://sshjit@127.0.0.1:$pg_port/postgres"
fi
