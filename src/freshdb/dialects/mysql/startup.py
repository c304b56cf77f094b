"""How a MySQL or MariaDB server container starts: one server, not two.

The official images' ``docker-entrypoint.sh`` initialises the data directory, starts
a temporary server without networking to set the root password (and run
``/docker-entrypoint-initdb.d``), stops it, and only then starts the real server.
freshdb's containers need none of that second server: :data:`ENTRYPOINT` initialises
the data directory the same way, then starts the server once, the accounts made by
``--init-file`` before it accepts a connection. Measured on the stand-in images
(benchmarks/README.md), a first start takes 0.3 s less (MariaDB 10.11), 0.6-1.0 s
(MariaDB 11.8) and 2.1-2.7 s (MySQL 9).

The end state is the entrypoint's: ``root@localhost`` and ``root@'%'`` with the
container's password and the server's default authentication plugin, all privileges
with grant option, no anonymous or host-named accounts, no test database, no time
zone tables (freshdb skips them with ``*_INITDB_SKIP_TZINFO``), the server's own
configuration files. Not made, as freshdb uses neither: the official mariadb image's
health-check accounts (for its ``healthcheck.sh``, which freshdb's containers do not
run) and its ``GRANT PROXY`` to ``root@'%'``. Whenever the script cannot tell that
the direct start gives that end state, it runs the image's entrypoint unchanged, and
says why in the container log.
"""

from __future__ import annotations

#: The first line a direct start writes to the container log.
DIRECT_START_MARKER = "freshdb: starting the server directly"
#: How a start that hands over to the image's entrypoint begins its log line.
FALLBACK_MARKER = "freshdb: running docker-entrypoint.sh"

# POSIX sh (the official images' /bin/sh is dash or bash). Its arguments are the
# server flags (ContainerSpec.command), exactly what the official entrypoint gets.
# Every check comes before anything is written; a failed initialisation empties the
# data directory again and hands over too, so the image's entrypoint always finds
# what it would have found.
_SCRIPT = r"""set -eu
datadir=/var/lib/mysql
initdb=/docker-entrypoint-initdb.d

has_entries() {  # whether directory $1 holds anything, hidden entries included
  for entry in "$1"/* "$1"/.[!.]* "$1"/..?*; do
    if [ -e "$entry" ] || [ -L "$entry" ]; then return 0; fi
  done
  return 1
}

refusal() {  # sets $why when the direct start cannot be sure to match the entrypoint
  why=
  if [ "$(id -u)" != 0 ]; then why='not running as root'; return 0; fi
  if [ $# = 0 ]; then why='no server flags'; return 0; fi
  for flag; do
    case $flag in
      --help|--verbose|--version|--print-defaults|--no-defaults|--defaults*|\
      --datadir=*|--user=*|--init[-_]file=*|--initialize*|--bootstrap|\
      --skip[-_]grant[-_]tables|--skip[-_]networking*)
        why="the flag $flag"; return 0 ;;
      --*) ;;
      *) why="the argument $flag is not a server flag"; return 0 ;;
    esac
  done
  # Only the variables freshdb sets (and the official images' own version variables):
  # any other MARIADB_*/MYSQL_* asks the entrypoint for something this script skips.
  names=$(env | while IFS='=' read -r name _; do
    case $name in
      MARIADB_ROOT_PASSWORD|MYSQL_ROOT_PASSWORD|MARIADB_INITDB_SKIP_TZINFO|\
      MYSQL_INITDB_SKIP_TZINFO|MARIADB_VERSION|MARIADB_MAJOR|MYSQL_MAJOR|MYSQL_VERSION|\
      MYSQL_SHELL_VERSION) ;;
      MARIADB_*|MYSQL_*) printf '%s ' "$name" ;;
    esac
  done)
  if [ -n "$names" ]; then why="the environment sets ${names% }"; return 0; fi
  password=${MARIADB_ROOT_PASSWORD:-}
  if [ -z "$password" ] || [ "$password" != "${MYSQL_ROOT_PASSWORD:-}" ]; then
    why='the root password variables are unset or differ'; return 0
  fi
  # freshdb's passwords are URL-safe base64: nothing to quote inside an SQL string.
  case $password in
    *[!A-Za-z0-9_-]*) why='the root password has characters to quote'; return 0 ;;
  esac
  if [ -z "${MARIADB_INITDB_SKIP_TZINFO:-}" ] || [ -z "${MYSQL_INITDB_SKIP_TZINFO:-}" ]; then
    why='time zone tables are wanted'; return 0
  fi
  if [ -d "$initdb" ] && has_entries "$initdb"; then
    why="$initdb holds files"; return 0
  fi
  if [ -d "$datadir" ] && has_entries "$datadir"; then
    why="$datadir is not empty"; return 0
  fi
  if command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null; then
    flavour=mariadb
  elif command -v mysqld >/dev/null && ! command -v mysql_install_db >/dev/null \
      && ! command -v mariadbd >/dev/null; then
    flavour=mysql
  else
    why='no server tools this script knows'; return 0
  fi
  if ! id -u mysql >/dev/null 2>&1; then why='no mysql user'; return 0; fi
  # The configuration may put the data elsewhere (a derived image's own VOLUME), or
  # ask for what the start's own flags would silently override or break.
  if ! command -v my_print_defaults >/dev/null; then
    why='no my_print_defaults to read the configuration'; return 0
  fi
  if [ "$flavour" = mariadb ]; then
    options=$(my_print_defaults --mysqld) || { why='my_print_defaults failed'; return 0; }
  else
    options=$(my_print_defaults mysqld server) || { why='my_print_defaults failed'; return 0; }
  fi
  configured=$(printf '%s\n' "$options" | sed -n 's/^--datadir=//p' | tail -n 1)
  if [ -n "$configured" ] && [ "${configured%/}" != "$datadir" ]; then
    why="the configuration's datadir is $configured"; return 0
  fi
  clash=$(printf '%s\n' "$options" | grep -xv -e '--user=mysql' \
    | grep -E '^--(user=|init[-_]file=|skip[-_]grant[-_]tables|skip[-_]networking)' \
    | head -n 1)
  if [ -n "$clash" ]; then why="the configuration sets ${clash%%=*}"; return 0; fi
  # Only the official entrypoint (or a stand-in for it) is safe to replace: a derived
  # image's own script under that name may do what this one would skip.
  if ! grep -qs docker_temp_server_start "$(command -v docker-entrypoint.sh)"; then
    why='docker-entrypoint.sh is not the official one'; return 0
  fi
  return 0
}

hand_over() {
  echo "freshdb: running docker-entrypoint.sh ($1)"
}

refusal "$@"
if [ -n "$why" ]; then
  hand_over "$why"
  exec docker-entrypoint.sh "$@"
fi

# As the official entrypoint: the directories of the files the configuration names
# (pid, socket, logs, keyring) and secure-file-priv's, made and the mysql user's; a
# derived image may name one its build never made.
configured_directories() {
  printf '%s\n' "$options" | sed -n -E \
    -e 's/^--(general[-_]log[-_]file|slow[-_]query[-_]log[-_]file)=(.+)$/file:\2/p' \
    -e 's/^--(keyring[-_]file[-_]data|pid[-_]file|socket)=(.+)$/file:\2/p' \
    -e 's/^--secure[-_]file[-_]priv=(.+)$/dir:\1/p' \
  | while IFS= read -r entry; do
    case $entry in
      file:*) directory=$(dirname "${entry#file:}") ;;
      *) directory=${entry#dir:} ;;
    esac
    case $directory in ''|NULL|.) continue ;; esac
    mkdir -p "$directory" || exit 1
    find "$directory" ! -user mysql -exec chown --no-dereference mysql '{}' + || exit 1
  done
}
if ! configured_directories; then
  hand_over 'a directory the configuration names cannot be made'
  exec docker-entrypoint.sh "$@"
fi

echo "freshdb: starting the server directly ($flavour, no temporary server)"
mkdir -p "$datadir" /run/mysqld /var/run/mysqld
chown mysql:mysql "$datadir" /run/mysqld /var/run/mysqld

if [ "$flavour" = mariadb ]; then
  server=mariadbd
  # As the official image: no test database, root by password, and a bootstrap
  # independent of the host's name (no root@<container id>, no anonymous accounts).
  if ! output=$(mariadb-install-db "$@" --user=mysql --datadir="$datadir" \
      --cross-bootstrap --skip-test-db --auth-root-authentication-method=normal \
      --old-mode=UTF8_IS_UTF8MB3 --default-time-zone=SYSTEM --enforce-storage-engine= \
      --loose-innodb-buffer-pool-load-at-startup=0 \
      --loose-innodb-buffer-pool-dump-at-shutdown=0 2>&1); then
    failed=mariadb-install-db
  fi
else
  server=mysqld
  if ! output=$(mysqld "$@" --user=mysql --datadir="$datadir" --initialize-insecure \
      --default-time-zone=SYSTEM 2>&1); then
    failed='mysqld --initialize-insecure'
  fi
fi
if [ -n "${failed:-}" ]; then
  printf '%s\n' "$output"
  # Leave the data directory as it was found (empty): the entrypoint starts afresh.
  find "$datadir" -mindepth 1 -delete
  hand_over "$failed failed"
  exec docker-entrypoint.sh "$@"
fi

# The accounts, made by the server before it accepts a connection. The file holds
# the password, as the container's own environment does; only mysql may read it.
rm -f /tmp/freshdb-init.*  # a restarted container's earlier start
init_file=$(mktemp /tmp/freshdb-init.XXXXXX)
if [ "$flavour" = mariadb ]; then
  cat >"$init_file" <<SQL
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';
SET PASSWORD FOR 'root'@'localhost' = PASSWORD('$password');
CREATE USER 'root'@'%' IDENTIFIED BY '$password';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
SQL
else
  cat >"$init_file" <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY '$password';
CREATE USER 'root'@'%' IDENTIFIED BY '$password';
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
SQL
fi
chown mysql "$init_file"
unset MARIADB_ROOT_PASSWORD MYSQL_ROOT_PASSWORD password
exec "$server" "$@" --user=mysql --datadir="$datadir" --init-file="$init_file"
"""

#: The container's entrypoint (``ContainerSpec.entrypoint``): the server flags follow
#: as its arguments (``$0`` names it in ``ps``).
ENTRYPOINT: tuple[str, ...] = ("sh", "-c", _SCRIPT, "freshdb-start")
