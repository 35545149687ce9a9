#!/usr/bin/env bash
# Prints the Python of a virtualenv with Synapse installed, installing it first if
# needed (about 10-20 s, once; cached in ~/.cache/chatsender).
set -euo pipefail
version="1.163.2"
exec "$(dirname "$0")/../scripts/python-venv.sh" "synapse-$version" "matrix-synapse==$version" synapse
