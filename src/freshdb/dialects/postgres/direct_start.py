"""Starting a Postgres container without the official entrypoint's temporary server.

On a first start the official image's ``docker-entrypoint.sh`` runs initdb, then
starts a temporary server on the local socket only, creates ``POSTGRES_DB``, runs
the scripts in ``/docker-entrypoint-initdb.d``, stops it, and only then starts the
real server: ~0.2 s of a ~1.4 s cold start, spent on a server freshdb never uses.
freshdb's container needs none of that: its database is ``postgres``, which initdb
makes, and it has no init scripts.

:data:`ENTRYPOINT` replaces the image's entrypoint (see
:attr:`~freshdb.dialects.base.ContainerSpec.entrypoint`) with a short POSIX shell
script that runs initdb and ``exec``\\s the server, leaving the same data directory
the entrypoint would: the same ``pg_hba.conf`` (initdb's defaults plus ``host all
all all $POSTGRES_HOST_AUTH_METHOD``), ``listen_addresses = '*'``, the locale and
encoding initdb takes from the image's environment, ``POSTGRES_INITDB_ARGS``
honoured. Whenever the script cannot be sure of that, it hands over to the image's
own entrypoint with the same arguments, which is exactly what ran before.
"""

from __future__ import annotations

#: What the script prints, on a direct start only, before the server starts (the
#: official entrypoint prints "PostgreSQL init process complete" instead).
MARKER = "freshdb: data directory initialised directly, starting the server"

#: The script; ``$@`` is the container's command (the server's ``-c`` options). It
#: prints :data:`MARKER` just before the server starts.
SCRIPT = r"""set -eu

# The arguments as the official entrypoint reads them: options go to postgres.
case "${1:-}" in
  '') set -- postgres ;;
  -*) set -- postgres "$@" ;;
esac

# How to become the postgres user: official images have gosu (older alpine ones
# su-exec); util-linux's setpriv is on Debian-based ones.
as_postgres=
if command -v gosu >/dev/null 2>&1; then
  as_postgres='gosu postgres'
elif command -v su-exec >/dev/null 2>&1; then
  as_postgres='su-exec postgres'
elif command -v setpriv >/dev/null 2>&1; then
  as_postgres='setpriv --reuid=postgres --regid=postgres --init-groups'
fi

# Succeeds only where starting directly ends where the official entrypoint would;
# anything else, even harmless, is left to the entrypoint.
direct_start_is_safe() {
  [ "$1" = postgres ] || return 1  # another command: the entrypoint runs it
  for option; do
    case "$option" in
      # Options that make postgres print and exit: nothing to initialise for.
      -'?'|--help|--describe-config|-V|--version|-C) return 1 ;;
    esac
  done
  # Root, to make the data directory; the tools and the user to drop to.
  [ "$(id -u)" = 0 ] && [ -n "$as_postgres" ] && id postgres >/dev/null 2>&1 || return 1
  command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1 || return 1
  # Only the official entrypoint (or a stand-in for it) is safe to replace: a derived
  # image's own script under that name may do what this one would skip.
  grep -qs docker_temp_server_start "$(command -v docker-entrypoint.sh)" || return 1
  # What initdb and pg_hba.conf need; the entrypoint explains what is missing.
  [ -n "${PGDATA:-}" ] && [ -n "${POSTGRES_PASSWORD:-}" ] || return 1
  [ -n "${POSTGRES_HOST_AUTH_METHOD:-}" ] || return 1  # else derived from the server
  # Settings only the entrypoint reads: secrets from files, a separate WAL directory.
  [ -z "${POSTGRES_PASSWORD_FILE:-}${POSTGRES_USER_FILE:-}${POSTGRES_DB_FILE:-}" ] || return 1
  [ -z "${POSTGRES_INITDB_ARGS_FILE:-}${POSTGRES_INITDB_WALDIR:-}" ] || return 1
  # A database other than initdb's own is created on the temporary server.
  [ "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}" = postgres ] || return 1
  # Init scripts (an extension's, say) run on the temporary server.
  [ -z "$(ls -A /docker-entrypoint-initdb.d 2>/dev/null)" ] || return 1
  # Data already there (a volume, a restarted container), or in the places the
  # 18+ entrypoint refuses to start over: only the entrypoint knows what to do.
  [ -z "$(ls -A "$PGDATA" 2>/dev/null)" ] || return 1
  for old in /var/lib/postgresql/PG_VERSION /var/lib/postgresql/data/PG_VERSION \
             /var/lib/postgresql/*/docker/PG_VERSION; do
    [ ! -e "$old" ] || return 1
  done
  if [ "$PGDATA" != /var/lib/postgresql/data ] \
      && grep -qs ' /var/lib/postgresql/data ' /proc/mounts; then
    return 1
  fi
}

if ! direct_start_is_safe "$@"; then
  echo 'freshdb: running docker-entrypoint.sh'
  exec docker-entrypoint.sh "$@"
fi

# As the entrypoint leaves them: the directories the postgres user's.
mkdir -p "$PGDATA" /var/run/postgresql
chown postgres "$PGDATA" /var/run/postgresql
chmod 700 "$PGDATA"
chmod 3775 /var/run/postgresql

# initdb reads the password from a file only postgres can read, removed at once.
password_file=$(mktemp)
trap 'rm -f "$password_file"' EXIT
printf '%s\n' "$POSTGRES_PASSWORD" >"$password_file"
chown postgres "$password_file"

# No --auth, --encoding or --locale, as the entrypoint: initdb's trust for local
# and loopback connections, its locale from the image's environment (LANG).
# POSTGRES_INITDB_ARGS is evaluated as the entrypoint does, so quotes in it count.
# --no-sync: the data is on tmpfs, and thrown away with the container.
initialise() {
  eval "set -- ${POSTGRES_INITDB_ARGS:-}"
  $as_postgres initdb --username="${POSTGRES_USER:-postgres}" --pwfile="$password_file" \
    --no-sync "$@"
}
initialise
rm -f "$password_file"
trap - EXIT

printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

echo 'freshdb: data directory initialised directly, starting the server'
exec $as_postgres "$@"
"""

#: The container's entrypoint: the script, run by the image's ``sh``; the container's
#: command becomes its arguments (the name after the script is its ``$0``).
ENTRYPOINT = ("sh", "-c", SCRIPT, "freshdb-postgres-start")

__all__ = ["ENTRYPOINT", "MARKER", "SCRIPT"]
