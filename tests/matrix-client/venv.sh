#!/usr/bin/env bash
# Prints the Python of a virtualenv with matrix-nio (the Matrix client library the
# integration tests drive an ordinary user with), installing it first if needed.
set -euo pipefail
version="0.25.2"
venv=${CHATSENDER_NIO_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/chatsender/matrix-nio-$version}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import nio' 2>/dev/null; then
  echo "Installing matrix-nio $version into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "matrix-nio==$version" >&2
fi
echo "$venv/bin/python"
