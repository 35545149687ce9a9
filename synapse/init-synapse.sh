#!/usr/bin/env bash
# Writes Synapse's homeserver.yaml for ChatSender and wires in the appservice
# registration.
#
#   synapse/init-synapse.sh dev  [options]   SQLite in DIR, client API on 127.0.0.1
#                                            only, no federation (the quickstart)
#   synapse/init-synapse.sh prod [options]   PostgreSQL, listening on all addresses
#                                            behind nginx (X-Forwarded-For trusted)
#
# Options, each also read from the environment variable in brackets:
#   --dir DIR             config, signing key, media, dev database [SYNAPSE_DATA_DIR]
#                         (default: data/synapse)
#   --server-name NAME    the part after ':' in user ids; never change it later
#                         [SYNAPSE_SERVER_NAME] (default: localhost)
#   --registration FILE   the file `chatsender registration` wrote; repeatable
#                         [SYNAPSE_REGISTRATION] (required)
#   --port PORT           the client listener [SYNAPSE_PORT] (default: 8008)
#   --public-baseurl URL  how clients reach Synapse, e.g. https://chat.example.org/
#                         [SYNAPSE_PUBLIC_BASEURL] (prod; default http://SERVER_NAME/)
#   --python PYTHON       a Python with Synapse, to make the signing key
#                         [SYNAPSE_PYTHON] (default: python3)
#   --force               write homeserver.yaml again even if it exists
# PostgreSQL (prod), as the postgres image names them: POSTGRES_HOST (default
# localhost), POSTGRES_PORT (5432), POSTGRES_DB (synapse), POSTGRES_USER (synapse),
# POSTGRES_PASSWORD. The database must use the C collation: create it with
#   CREATE DATABASE synapse ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0;
# (compose.yaml's postgres service does, through POSTGRES_INITDB_ARGS).
#
# Secrets (registration_shared_secret, macaroon_secret_key, form_secret) are made
# once and kept in DIR/secrets.env, so --force keeps them. An existing homeserver.yaml
# is kept unless --force: edit it freely after the first run. Start Synapse with
#   python -m synapse.app.homeserver -c DIR/homeserver.yaml
# and restart it whenever a registration changes: Synapse reads them only at start.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }
fail() { echo "init-synapse: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
mode=$1
shift
case $mode in
  dev | prod) ;;
  -h | --help) usage 0 ;;
  *) fail "the first argument is dev or prod, not '$mode' (see --help)" ;;
esac

dir=${SYNAPSE_DATA_DIR:-data/synapse}
server_name=${SYNAPSE_SERVER_NAME:-localhost}
port=${SYNAPSE_PORT:-8008}
public_baseurl=${SYNAPSE_PUBLIC_BASEURL:-}
python=${SYNAPSE_PYTHON:-python3}
force=false
registrations=()
[ -n "${SYNAPSE_REGISTRATION:-}" ] && registrations+=("$SYNAPSE_REGISTRATION")
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=${2:?--dir needs a directory}; shift 2 ;;
    --server-name) server_name=${2:?--server-name needs a name}; shift 2 ;;
    --registration) registrations+=("${2:?--registration needs a file}"); shift 2 ;;
    --port) port=${2:?--port needs a number}; shift 2 ;;
    --public-baseurl) public_baseurl=${2:?--public-baseurl needs a URL}; shift 2 ;;
    --python) python=${2:?--python needs a program}; shift 2 ;;
    --force) force=true; shift ;;
    -h | --help) usage 0 ;;
    *) fail "unknown option '$1' (see --help)" ;;
  esac
done

[ ${#registrations[@]} -gt 0 ] || fail "no --registration: run \`chatsender registration -o FILE\` first and name FILE here"
for r in "${registrations[@]}"; do
  [ -f "$r" ] || fail "registration file $r does not exist (\`chatsender registration -o $r\` writes it)"
done
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || fail "--port must be a port number, not '$port'"
[[ $server_name =~ ^[A-Za-z0-9.:-]+$ ]] || fail "--server-name '$server_name' is not a host name"
command -v "$python" >/dev/null || fail "no $python: pass --python with a Python that has Synapse installed"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
config=$dir/homeserver.yaml
if [ -f "$config" ] && ! $force; then
  echo "init-synapse: $config exists; kept (--force writes it again)" >&2
  exit 0
fi

# A double-quoted YAML string.
q() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
absolute() { (cd "$(dirname "$1")" && printf '%s/%s' "$(pwd)" "$(basename "$1")"); }

secrets=$dir/secrets.env
if [ ! -f "$secrets" ]; then
  (
    umask 077
    for name in registration_shared_secret macaroon_secret_key form_secret; do
      printf '%s=%s\n' "$name" "$("$python" -c 'import secrets; print(secrets.token_hex(32))')"
    done > "$secrets"
  )
fi
secret() { sed -n "s/^$1=//p" "$secrets"; }
registration_shared_secret=$(secret registration_shared_secret)
macaroon_secret_key=$(secret macaroon_secret_key)
form_secret=$(secret form_secret)

if [ "$mode" = dev ]; then
  bind=127.0.0.1
  x_forwarded=false
  public_baseurl=${public_baseurl:-http://127.0.0.1:$port/}
  database="database:
  name: sqlite3
  args:
    database: $(q "$dir/homeserver.db")"
  log_handler="file:
      class: logging.FileHandler
      formatter: plain
      filename: $(q "$dir/homeserver.log")"
  log_to="file"
else
  bind=0.0.0.0
  x_forwarded=true
  public_baseurl=${public_baseurl:-http://$server_name/}
  [ -n "${POSTGRES_PASSWORD:-}" ] || fail "prod needs POSTGRES_PASSWORD (and POSTGRES_HOST, POSTGRES_DB, POSTGRES_USER unless the defaults fit)"
  database="database:
  name: psycopg2
  args:
    host: $(q "${POSTGRES_HOST:-localhost}")
    port: ${POSTGRES_PORT:-5432}
    dbname: $(q "${POSTGRES_DB:-synapse}")
    user: $(q "${POSTGRES_USER:-synapse}")
    password: $(q "$POSTGRES_PASSWORD")
    cp_min: 5
    cp_max: 10"
  log_handler="console:
      class: logging.StreamHandler
      formatter: plain"
  log_to="console"
fi

cat > "$dir/log.yaml" <<EOF
version: 1
formatters:
  plain:
    format: "%(asctime)s %(levelname)s %(name)s %(message)s"
handlers:
  $log_handler
root:
  level: INFO
  handlers: [$log_to]
disable_existing_loggers: false
EOF

{
  echo "# Synapse for ChatSender ($mode), written by synapse/init-synapse.sh."
  echo "# Secrets below come from secrets.env; keep this file private."
  echo "server_name: $(q "$server_name")"
  echo "public_baseurl: $(q "$public_baseurl")"
  echo "pid_file: $(q "$dir/homeserver.pid")"
  echo "listeners:"
  echo "  - port: $port"
  echo "    bind_addresses: [$(q "$bind")]"
  echo "    type: http"
  echo "    tls: false"
  echo "    x_forwarded: $x_forwarded"
  echo "    resources:"
  echo "      - names: [client]"
  echo "        compress: false"
  echo "$database"
  echo "log_config: $(q "$dir/log.yaml")"
  echo "media_store_path: $(q "$dir/media")"
  echo "signing_key_path: $(q "$dir/signing.key")"
  echo "report_stats: false"
  echo "enable_metrics: false"
  echo "# A private server: no federation, no open registration. People get in with"
  echo "# keys through ChatSender; others get accounts from the operator"
  echo "# (register_new_matrix_user with the shared secret)."
  echo "federation_domain_whitelist: []"
  echo "trusted_key_servers: []"
  echo "suppress_key_server_warning: true"
  echo "enable_registration: false"
  echo "registration_shared_secret: $(q "$registration_shared_secret")"
  echo "macaroon_secret_key: $(q "$macaroon_secret_key")"
  echo "form_secret: $(q "$form_secret")"
  echo "app_service_config_files:"
  for r in "${registrations[@]}"; do
    echo "  - $(q "$(absolute "$r")")"
  done
} > "$config.tmp"
chmod 600 "$config.tmp"
mv "$config.tmp" "$config"

# The signing key (and anything else missing), made by Synapse itself.
if [ ! -f "$dir/signing.key" ]; then
  "$python" -m synapse.app.homeserver -c "$config" --generate-keys >/dev/null \
    || fail "$python could not make the signing key: is Synapse installed for it?"
fi
echo "init-synapse: wrote $config ($mode)" >&2
