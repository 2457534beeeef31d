#!/usr/bin/env bash
# clang-16 builds the Solana program from C. The built program is committed, so without clang
# everything still runs; only the rebuild-and-compare test needs it. Install it when we can.
set -u
if command -v clang-16 >/dev/null; then touch .clang-checked; exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing clang-16 (Debian) to build the Solana program..."
  if (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-16) >/tmp/tessera-apt.log 2>&1; then
    touch .clang-checked; exit 0
  fi
  echo "error: apt-get install clang-16 failed (log: /tmp/tessera-apt.log)."; exit 1
fi
echo "note: clang-16 is not installed and this is not a root shell; the committed Solana program"
echo "      (contracts/solana/tessera.so) is used and the rebuild test is skipped."
echo "      To rebuild it: sudo apt-get install clang-16"
