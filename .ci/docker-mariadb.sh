#!/usr/bin/env bash
# Build a local MariaDB image for the testcontainers tests, on a machine with no image registry.
#
#   bash .ci/docker-mariadb.sh                 # prints the image name on its last line
#   IMAGE=local/mariadb:10.11 bash .ci/docker-mariadb.sh
#
# Needs a running Docker engine (../shared/tools/docker-postgres.sh starts one). The image is
# Debian's own mariadb-server package (debootstrap) with an entrypoint that behaves like the
# official image's as far as testcontainers' MySqlContainer relies on it: it honours
# MARIADB_/MYSQL_ ROOT_PASSWORD, DATABASE, USER and PASSWORD, initialises the data directory
# with a temporary server first, so "ready for connections" is logged twice (MySqlContainer
# waits for that), and lets root log in from any host with the password.
# Exit status: 0 ready; 1 no engine or the build failed (container tests then skip, saying why).
set -euo pipefail
IMAGE=${IMAGE:-local/mariadb:10.11}

say() { echo "docker-mariadb: $*" >&2; }

docker info >/dev/null 2>&1 || { say "no Docker engine is reachable"; exit 1; }

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap) >/tmp/docker-mariadb-install.log 2>&1
  root=$(mktemp -d /tmp/mariadbroot.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  say "building $IMAGE with debootstrap (about a minute)"
  debootstrap --variant=minbase --include=mariadb-server bookworm "$root" >/tmp/debootstrap-mariadb.log 2>&1 \
    || { say "debootstrap failed (see /tmp/debootstrap-mariadb.log)"; exit 1; }
  # The package initialised a data directory while installing: start every container empty.
  rm -rf "${root:?}/var/lib/mysql" && mkdir -p "$root/var/lib/mysql"
  cat >"$root/docker-entrypoint.sh" <<'ENTRY'
#!/bin/sh
# Honours MARIADB_/MYSQL_ ROOT_PASSWORD, DATABASE, USER and PASSWORD like the official image.
set -e
datadir=/var/lib/mysql
root_password=${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}
database=${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}
user=${MARIADB_USER:-${MYSQL_USER:-}}
password=${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}
mkdir -p /run/mysqld
chown -R mysql:mysql /run/mysqld "$datadir"
if [ ! -d "$datadir/mysql" ]; then
  mariadb-install-db --user=mysql --datadir="$datadir" --skip-test-db >/dev/null
  socket=/run/mysqld/init.sock
  mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
  pid=$!
  for _ in $(seq 1 120); do mariadb-admin --socket="$socket" -uroot ping >/dev/null 2>&1 && break; sleep 0.25; done
  {
    echo "CREATE USER 'root'@'%' IDENTIFIED BY '$root_password';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    if [ -n "$database" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$database\`;"; fi
    if [ -n "$user" ] && [ "$user" != root ]; then
      echo "CREATE USER '$user'@'%' IDENTIFIED BY '$password';"
      if [ -n "$database" ]; then echo "GRANT ALL ON \`$database\`.* TO '$user'@'%';"; fi
    fi
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$root_password';"
  } | mariadb --socket="$socket" -uroot
  mariadb-admin --socket="$socket" -uroot -p"$root_password" shutdown
  wait "$pid" || true
fi
exec mariadbd --user=mysql --datadir="$datadir" --bind-address=0.0.0.0 --port=3306 "$@"
ENTRY
  chmod +x "$root/docker-entrypoint.sh"
  tar -C "$root" -c . | docker import \
    -c 'ENTRYPOINT ["/docker-entrypoint.sh"]' -c 'EXPOSE 3306' - "$IMAGE" >/dev/null
fi
echo "$IMAGE"
