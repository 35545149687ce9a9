#!/usr/bin/env bash
# Prints the Python of a virtualenv with Synapse installed (and psycopg2, for Synapse
# on PostgreSQL), installing it first if needed (about 10-20 s, once; cached in
# ~/.cache/chatsender).
set -euo pipefail
version="1.163.2"
exec "$(dirname "$0")/../scripts/python-venv.sh" "synapse-$version" \
  "matrix-synapse==$version psycopg2-binary==2.9.13" synapse,psycopg2
