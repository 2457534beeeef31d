#!/usr/bin/env bash
# Refuse to build the venv with a Python older than 3.11, with a message that says what to do.
py=${1:-python3}
command -v "$py" >/dev/null || { echo "error: $py not found. Install Python >= 3.11 (Debian: apt-get install python3 python3-venv) or run: make PYTHON=/path/to/python3.11"; exit 1; }
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "error: $("$py" --version 2>&1) is too old; Tessera needs Python >= 3.11. Run: make PYTHON=/path/to/python3.11"; exit 1; }
"$py" -c 'import venv, ensurepip' 2>/dev/null || {
  echo "error: $py lacks venv/ensurepip. Debian: apt-get install python3-venv"; exit 1; }
