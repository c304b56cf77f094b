#!/usr/bin/env bash
# The official mariadb image's entrypoint contract, reduced to what it promises:
# MARIADB_ROOT_PASSWORD / MYSQL_ROOT_PASSWORD, MARIADB_DATABASE / MYSQL_DATABASE,
# MARIADB_USER / MARIADB_PASSWORD; initialisation on first start, then the *.sql and
# *.sh files of /docker-entrypoint-initdb.d; arguments beginning with "-" are passed
# to mariadbd.
set -Eeuo pipefail
shopt -s nullglob

if [ "${1:0:1}" = '-' ]; then
  set -- mariadbd "$@"
fi

if [ "$1" = 'mariadbd' ] || [ "$1" = 'mysqld' ]; then
  datadir=/var/lib/mysql
  mkdir -p "$datadir" /run/mysqld
  chown mysql:mysql "$datadir" /run/mysqld

  root_password=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
  database=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
  user=${MARIADB_USER:-${MYSQL_USER:-}}
  password=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}

  if [ ! -d "$datadir/mysql" ]; then
    if [ -z "$root_password" ] && [ -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ]; then
      echo 'error: MARIADB_ROOT_PASSWORD is not set' >&2
      exit 1
    fi
    mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db \
      --auth-root-authentication-method=normal >/dev/null
    # (The official entrypoint's docker_temp_server_start: freshdb's start-up
    # script looks for that name before it replaces the entrypoint.)
    # A temporary server without networking, like the official image, so no
    # client reaches it over TCP before initialisation is over.
    socket=/run/mysqld/init.sock
    "$@" --user=mysql --skip-networking --socket="$socket" &
    pid=$!
    for _ in $(seq 1 120); do
      mariadb --protocol=socket --socket="$socket" -uroot -e 'SELECT 1' >/dev/null 2>&1 && break
      sleep 0.25
    done
    esc_pw=${root_password//\\/\\\\}
    esc_pw=${esc_pw//\'/\\\'}
    {
      echo "SET @@SESSION.SQL_LOG_BIN=0;"
      echo "DELETE FROM mysql.user WHERE user NOT IN ('mysql.sys', 'mariadb.sys', 'root') OR host NOT IN ('localhost');"
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$esc_pw';"
      echo "CREATE USER 'root'@'%' IDENTIFIED BY '$esc_pw';"
      echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
      if [ -n "$database" ]; then
        echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"
      fi
      if [ -n "$user" ]; then
        esc_upw=${password//\\/\\\\}
        esc_upw=${esc_upw//\'/\\\'}
        echo "CREATE USER '$user'@'%' IDENTIFIED BY '$esc_upw';"
        if [ -n "$database" ]; then
          echo "GRANT ALL ON \`$database\`.* TO '$user'@'%';"
        fi
      fi
      echo "FLUSH PRIVILEGES;"
    } | mariadb --protocol=socket --socket="$socket" -uroot
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sql) echo "$0: running $f"
               MYSQL_PWD=$root_password mariadb --protocol=socket --socket="$socket" -uroot \
                 ${database:+--database="$database"} <"$f" ;;
        *.sh) echo "$0: running $f"; . "$f" ;;
        *) echo "$0: ignoring $f" ;;
      esac
    done
    kill "$pid"
    wait "$pid" || true
    echo 'MariaDB init process done. Ready for start up.'
  fi
  exec "$@" --user=mysql
fi

exec "$@"
