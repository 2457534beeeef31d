#!/usr/bin/env bash
# nats-server (with JetStream) carries feed reports from round leaders to any number of feed servers
# when [feed_round]/[feed_server] nats_urls are set. The tests start their own (nats-server -js -sd
# <tmpdir> on a free port, tests/support/nats.py), never a system service; this installs the binary.
set -u
if command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; then touch .nats-checked; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing nats-server (Debian) for the feed fan-out tests..."
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server) >/tmp/tessera-apt-nats.log 2>&1; then
    # Debian enables a system service with the package; the tests never use it.
    (systemctl disable --now nats-server >/dev/null 2>&1 || true)
    touch .nats-checked; exit 0
  fi
  echo "error: apt-get install nats-server failed (log: /tmp/tessera-apt-nats.log)."; exit 1
fi
echo "error: nats-server is not installed and this is not a root shell; the feed fan-out tests need it."
echo "       Install it: sudo apt-get install nats-server"
exit 1
