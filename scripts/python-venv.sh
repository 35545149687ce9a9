#!/usr/bin/env bash
# scripts/python-venv.sh NAME PIP_SPEC MODULE
# Prints the Python of a cached virtualenv (~/.cache/chatsender/NAME) in which MODULE
# imports, creating it with `pip install PIP_SPEC` first if needed.
set -euo pipefail
name=$1 spec=$2 module=$3
venv=${XDG_CACHE_HOME:-$HOME/.cache}/chatsender/$name
# The marker is written only after pip succeeded: an interrupted install is redone.
if [ ! -f "$venv/.installed" ] || ! "$venv/bin/python" -c "import $module" 2>/dev/null; then
  echo "Installing $spec into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/python"
