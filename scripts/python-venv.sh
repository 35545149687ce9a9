#!/usr/bin/env bash
# scripts/python-venv.sh NAME PIP_SPECS MODULES
# Prints the Python of a cached virtualenv (~/.cache/chatsender/NAME) in which MODULES
# (comma-separated) import, creating it with `pip install PIP_SPECS` (space-separated)
# first if needed.
set -euo pipefail
name=$1 specs=$2 modules=$3
venv=${XDG_CACHE_HOME:-$HOME/.cache}/chatsender/$name
# The marker is written only after pip succeeded: an interrupted install is redone.
if [ ! -f "$venv/.installed" ] || ! "$venv/bin/python" -c "import $modules" 2>/dev/null; then
  echo "Installing $specs into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # one word per package
  "$venv/bin/pip" install --quiet --disable-pip-version-check $specs >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/python"
