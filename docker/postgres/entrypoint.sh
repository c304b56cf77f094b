#!/usr/bin/env bash
# The official postgres image's entrypoint contract, reduced to what it promises:
# POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_INITDB_ARGS,
# POSTGRES_HOST_AUTH_METHOD, PGDATA; initdb on first start, then the *.sql and *.sh
# files in /docker-entrypoint-initdb.d on a temporary server; arguments beginning
# with "-" are passed to postgres.
# No -u, as upstream: a sourced init script may read unset variables.
set -Eeo pipefail

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  chmod 3775 /var/run/postgresql
  # Like the official image, the rest runs as postgres: initdb, the init scripts
  # (which a *.sh file may expect, sourced or run) and the server itself.
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = 'postgres' ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  # Exported, as upstream: init scripts use them.
  export POSTGRES_USER=${POSTGRES_USER:-postgres}
  export POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != 'trust' ]; then
    echo 'error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)' >&2
    exit 1
  fi
  # No --encoding or --locale, as upstream: initdb takes them from LANG. Upstream
  # evaluates POSTGRES_INITDB_ARGS, so quotes in it count.
  eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS" \
    >/dev/null
  # Unset, the method is the password_encryption the given arguments produce.
  method=${POSTGRES_HOST_AUTH_METHOD:-$("$@" -C password_encryption)}
  printf 'host all all all %s\n' "$method" >>"$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # (The official entrypoint's docker_temp_server_start: freshdb's start-up
  # script looks for that name before it replaces the entrypoint.)
  # Like the official image: a temporary server on the local socket only, so
  # nobody can connect over TCP before initialisation is over.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc -q)
  if [ "$POSTGRES_DB" != 'postgres' ]; then
    "${psql[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db"' >/dev/null
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        echo "$0: running $f"
        # shellcheck disable=SC1090 # as upstream: run if executable, else sourced
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql)
        echo "$0: running $f"
        "${psql[@]}" --dbname "$POSTGRES_DB" -f "$f"
        ;;
      *) [ ! -e "$f" ] || echo "$0: ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
