#!/usr/bin/env bash
# The dev extras include mysqlclient, which compiles against the MySQL client
# library: its headers and pkg-config must be there before `pip install`.
# Installs them from Debian's packages where it can (as root); skips what is there.
set -euo pipefail

log() { echo "freshdb setup: $*" >&2; }

if command -v pkg-config >/dev/null 2>&1 \
  && { pkg-config --exists mysqlclient || pkg-config --exists mariadb; }; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || [ ! -f /etc/debian_version ]; then
  log "mysqlclient needs the MySQL client headers and pkg-config: install them"
  log "(Debian/Ubuntu: default-libmysqlclient-dev pkg-config; macOS: brew install mysql-client pkg-config)"
  exit 0  # pip then says the same, with its own words
fi
log "installing the MySQL client headers (default-libmysqlclient-dev) from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq default-libmysqlclient-dev pkg-config build-essential >/dev/null
