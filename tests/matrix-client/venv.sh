#!/usr/bin/env bash
# Prints the Python of a virtualenv with matrix-nio (the Matrix client library the
# integration tests drive an ordinary user with), installing it first if needed.
set -euo pipefail
version="0.25.2"
exec "$(dirname "$0")/../../scripts/python-venv.sh" "matrix-nio-$version" "matrix-nio==$version" nio
