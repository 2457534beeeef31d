#!/usr/bin/env bash
# PostgreSQL backs the replicated stores (relayer replicas, attester standbys). The tests start their
# own server in a temporary directory (tests/support/postgres.py: initdb + pg_ctl), never a system
# service, so only the binaries are needed. Install Debian's package when they are missing.
set -u
found() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; }
if found; then touch .postgres-checked; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing postgresql (Debian) for the PostgreSQL store tests..."
  # Binaries only: no "main" cluster, so nothing is left running as a system service.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/tessera.conf
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/tmp/tessera-apt-postgres.log 2>&1 \
      && found; then
    touch .postgres-checked; exit 0
  fi
  echo "error: apt-get install postgresql failed (log: /tmp/tessera-apt-postgres.log)."; exit 1
fi
echo "error: PostgreSQL (initdb, pg_ctl) is not installed and this is not a root shell; the store tests"
echo "       run against it. Install it: sudo apt-get install postgresql"
exit 1
