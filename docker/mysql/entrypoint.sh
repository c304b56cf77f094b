#!/usr/bin/env bash
# The official mysql image's entrypoint contract, reduced to what it promises:
# MYSQL_ROOT_PASSWORD (or MYSQL_ALLOW_EMPTY_PASSWORD), MYSQL_ROOT_HOST (default %),
# MYSQL_DATABASE, MYSQL_USER / MYSQL_PASSWORD; a datadir made by
# `mysqld --initialize-insecure` on first start, then the *.sql and *.sh files of
# /docker-entrypoint-initdb.d; arguments beginning with "-" are passed to mysqld.
set -Eeuo pipefail
shopt -s nullglob

if [ "${1:0:1}" = '-' ]; then
  set -- mysqld "$@"
fi

sql_string() {  # a single-quoted SQL string literal
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\\\'}"
}

if [ "$1" = 'mysqld' ]; then
  datadir=/var/lib/mysql
  mkdir -p "$datadir" /var/run/mysqld
  chown mysql:mysql "$datadir" /var/run/mysqld

  if [ ! -d "$datadir/mysql" ]; then
    root_password=${MYSQL_ROOT_PASSWORD:-}
    if [ -z "$root_password" ] && [ -z "${MYSQL_ALLOW_EMPTY_PASSWORD:-}" ]; then
      echo 'error: MYSQL_ROOT_PASSWORD is not set (or set MYSQL_ALLOW_EMPTY_PASSWORD)' >&2
      exit 1
    fi
    # The server's own flags (tuning) apply to initialisation too, as upstream.
    "$@" --initialize-insecure --user=mysql --datadir="$datadir" >/dev/null 2>&1 || {
      echo 'error: mysqld --initialize-insecure failed:' >&2
      "$@" --initialize-insecure --user=mysql --datadir="$datadir" >&2 || true
      exit 1
    }
    # (The official entrypoint's docker_temp_server_start: freshdb's start-up
    # script looks for that name before it replaces the entrypoint.)
    # A temporary server without networking, like the official image, so no
    # client reaches it over TCP before initialisation is over.
    socket=/var/run/mysqld/init.sock
    "$@" --user=mysql --skip-networking --socket="$socket" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 240); do
      mysql --protocol=socket --socket="$socket" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
      sleep 0.25
    done
    root_host=${MYSQL_ROOT_HOST:-%}
    pw=$(sql_string "$root_password")
    {
      echo "SET @@SESSION.SQL_LOG_BIN=0;"
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $pw;"
      if [ "$root_host" != 'localhost' ]; then
        echo "CREATE USER 'root'@$(sql_string "$root_host") IDENTIFIED BY $pw;"
        echo "GRANT ALL ON *.* TO 'root'@$(sql_string "$root_host") WITH GRANT OPTION;"
      fi
      if [ -n "${MYSQL_DATABASE:-}" ]; then
        echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
      fi
      if [ -n "${MYSQL_USER:-}" ]; then
        echo "CREATE USER '$MYSQL_USER'@'%' IDENTIFIED BY $(sql_string "${MYSQL_PASSWORD:-}");"
        if [ -n "${MYSQL_DATABASE:-}" ]; then
          echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'%';"
        fi
      fi
      echo "FLUSH PRIVILEGES;"
    } | mysql --protocol=socket --socket="$socket" -uroot
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sql) echo "$0: running $f"
               MYSQL_PWD=$root_password mysql --protocol=socket --socket="$socket" -uroot \
                 ${MYSQL_DATABASE:+--database="$MYSQL_DATABASE"} <"$f" ;;
        *.sh) echo "$0: running $f"; . "$f" ;;
        *) echo "$0: ignoring $f" ;;
      esac
    done
    kill "$pid"
    wait "$pid" || true
    echo 'MySQL init process done. Ready for start up.'
  fi
  exec "$@" --user=mysql
fi

exec "$@"
