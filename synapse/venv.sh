#!/usr/bin/env bash
# Prints the Python of a virtualenv with Synapse installed, installing it first if
# needed (about 10-20 s, once; cached in ~/.cache/chatsender).
set -euo pipefail
version="1.163.2"
venv=${CHATSENDER_SYNAPSE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chatsender/synapse-$version}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import synapse' 2>/dev/null; then
  echo "Installing Synapse $version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "matrix-synapse==$version" >&2
fi
echo "$venv/bin/python"
