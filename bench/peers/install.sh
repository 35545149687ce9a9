#!/usr/bin/env bash
# bench/peers/install.sh: installs the two peer appservices (see README.md), idempotently.
#   bridge/: `npm ci`, redone only when node_modules is missing or older than package-lock.json.
#   mautrix/: a virtualenv in ${XDG_CACHE_HOME:-$HOME/.cache}/chatsender/bench-mautrix-VERSION
#             with mautrix/requirements.txt installed, redone when incomplete or the pins change.
# Prints the path of that virtualenv's python on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# --- bridge (node) ---
stamp=$here/bridge/node_modules/.bench-installed
if [ ! -f "$stamp" ] || [ "$here/bridge/package-lock.json" -nt "$stamp" ]; then
  echo "install.sh: npm ci in $here/bridge" >&2
  # npm ci deletes node_modules first, so the stamp goes with it until this succeeds.
  (cd "$here/bridge" && npm ci --no-audit --no-fund --loglevel=error) >&2
  touch "$stamp"
else
  echo "install.sh: $here/bridge/node_modules is up to date" >&2
fi

# --- mautrix (python) ---
requirements=$here/mautrix/requirements.txt
version=$(sed -n 's/^mautrix==\([^[:space:]]*\).*/\1/p' "$requirements")
if [ -z "$version" ]; then
  echo "install.sh: no mautrix==VERSION pin in $requirements" >&2
  exit 1
fi
venv=${XDG_CACHE_HOME:-$HOME/.cache}/chatsender/bench-mautrix-$version
# The marker is a copy of the requirements it was made from, written only after pip
# succeeded: an interrupted install, or one from other pins, is redone from scratch.
if ! cmp -s "$requirements" "$venv/.installed" 2>/dev/null ||
  ! "$venv/bin/python" -c 'import mautrix.appservice, aiohttp' 2>/dev/null; then
  echo "install.sh: installing $requirements into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2
  cp "$requirements" "$venv/.installed"
else
  echo "install.sh: $venv is up to date" >&2
fi
echo "$venv/bin/python"
