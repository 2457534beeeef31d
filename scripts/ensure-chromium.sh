#!/usr/bin/env bash
# The explorer's end-to-end test drives a real browser: Playwright for Python (the dev extra) with
# Debian's Chromium (/usr/bin/chromium, works offline), never `playwright install`'s download.
# Install the package when it is missing and we are root, the way ensure-clang.sh installs clang.
set -u
if [ -x /usr/bin/chromium ]; then touch .chromium-checked; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium (Debian) for the explorer's browser test..."
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/tessera-apt-chromium.log 2>&1 \
      && [ -x /usr/bin/chromium ]; then
    touch .chromium-checked; exit 0
  fi
  echo "error: apt-get install chromium failed (log: /tmp/tessera-apt-chromium.log)."; exit 1
fi
echo "error: Chromium (/usr/bin/chromium) is not installed and this is not a root shell; the explorer's"
echo "       browser test needs it. Install it: sudo apt-get install chromium"
exit 1
