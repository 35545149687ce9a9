#!/usr/bin/env python3
"""Start and stop a local Synapse for ChatSender's tests and its quickstart.

Run with the Python of the Synapse virtualenv:

    dev-synapse.py start --dir DIR --port PORT --registration REG.yaml [...]
                         [--database FILE] [--open-registration]
    dev-synapse.py start --dir DIR --port PORT --config homeserver.yaml
    dev-synapse.py stop --dir DIR

`start` writes DIR/homeserver.yaml (SQLite, in memory unless --database names a file;
client API only on 127.0.0.1; every rate limit raised), or takes the one --config
names; starts Synapse in the background, waits until it answers and prints its PID.
`stop` ends it by the PID in DIR/synapse.pid. Secrets are made once per DIR, so a
persistent database stays valid across restarts.
"""

import argparse
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

UNLIMITED = {"per_second": 10000, "burst_count": 100000}
RATE_LIMITS = [
    "rc_message", "rc_registration", "rc_registration_token_validity", "rc_joins_per_room",
    "rc_key_requests", "rc_3pid_validation", "rc_third_party_invite", "rc_media_create",
    "rc_room_creation", "rc_profile", "rc_reports", "rc_user_directory",
    "rc_delayed_event_mgmt", "rc_admin_redaction",
]
NESTED_RATE_LIMITS = {
    "rc_login": ["address", "account", "failed_attempts"],
    "rc_joins": ["local", "remote"],
    "rc_invites": ["per_room", "per_user", "per_issuer"],
    "rc_presence": ["per_user"],
}


def secrets_of(directory):
    path = os.path.join(directory, "secrets.json")
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            json.dump({k: secrets.token_hex(32) for k in
                       ("registration_shared_secret", "macaroon_secret_key", "form_secret")}, f)
    with open(path) as f:
        return json.load(f)


def write_config(directory, port, registrations, server_name, database, open_registration):
    signing_key = os.path.join(directory, "signing.key")
    if not os.path.exists(signing_key):
        seed = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        with open(signing_key, "w") as f:
            f.write(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
    log_config = os.path.join(directory, "log.yaml")
    with open(log_config, "w") as f:
        json.dump({
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {"file": {
                "class": "logging.FileHandler", "formatter": "plain",
                "filename": os.path.join(directory, "homeserver.log"),
            }},
            "root": {"level": "INFO", "handlers": ["file"]},
            "disable_existing_loggers": False,
        }, f)
    config = {
        "server_name": server_name,
        "pid_file": os.path.join(directory, "homeserver.pid"),
        "listeners": [{
            "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
            "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}],
        }],
        "database": {"name": "sqlite3", "args": {"database": database}},
        "log_config": log_config,
        "media_store_path": os.path.join(directory, "media"),
        "signing_key_path": signing_key,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "federation_domain_whitelist": [],
        "report_stats": False,
        "enable_metrics": False,
        "presence": {"enabled": False},
        **secrets_of(directory),
        "enable_registration": open_registration,
        "enable_registration_without_verification": open_registration,
        "app_service_config_files": [os.path.abspath(r) for r in registrations],
    }
    for name in RATE_LIMITS:
        config[name] = dict(UNLIMITED)
    for name, keys in NESTED_RATE_LIMITS.items():
        config[name] = {key: dict(UNLIMITED) for key in keys}
    path = os.path.join(directory, "homeserver.yaml")
    with open(path, "w") as f:
        json.dump(config, f, indent=1)  # JSON is YAML
    return path


def wait_until_up(port, process, timeout):
    url = f"http://127.0.0.1:{port}/_matrix/client/versions"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def port_in_use(port):
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start(args):
    os.makedirs(args.dir, exist_ok=True)
    stop(args)  # a Synapse left over from an earlier run in this directory
    if port_in_use(args.port):
        sys.exit(f"port {args.port} is in use: another Synapse (or other server) is running there")
    if args.config:
        # A homeserver.yaml written elsewhere (synapse/init-synapse.sh dev).
        config = os.path.abspath(args.config)
    else:
        database = os.path.abspath(args.database) if args.database else ":memory:"
        config = write_config(args.dir, args.port, args.registration, args.server_name,
                              database, args.open_registration)
    out = open(os.path.join(args.dir, "synapse.out"), "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "synapse.app.homeserver", "-c", config],
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=args.dir,
    )
    with open(os.path.join(args.dir, "synapse.pid"), "w") as f:
        f.write(str(process.pid))
    if not wait_until_up(args.port, process, args.timeout):
        exited = process.poll()
        stop_pid(process.pid)
        tail = open(os.path.join(args.dir, "synapse.out"), errors="replace").read()[-3000:]
        why = f"exited with {exited}" if exited is not None else f"did not answer within {args.timeout}s"
        sys.exit(f"Synapse on port {args.port} {why} (see {args.dir}/homeserver.log):\n{tail}")
    print(process.pid)


def stop_pid(pid, timeout=15):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            # Reap it if it is our child; otherwise keep polling.
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop(args):
    pid_file = os.path.join(args.dir, "synapse.pid")
    if not os.path.exists(pid_file):
        return
    with open(pid_file) as f:
        pid = int(f.read().strip())
    stop_pid(pid)
    os.remove(pid_file)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("start")
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--registration", action="append", default=[])
    p.add_argument("--server-name", default="localhost")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--database", help="SQLite file (default: in memory)")
    p.add_argument("--open-registration", action="store_true",
                   help="let anyone register an account (tests)")
    p.add_argument("--config", help="start with this homeserver.yaml instead of writing one "
                   "(its listener must be on 127.0.0.1:PORT)")
    p.set_defaults(func=start)
    p = sub.add_parser("stop")
    p.add_argument("--dir", required=True)
    p.set_defaults(func=stop)
    args = parser.parse_args()
    args.dir = os.path.abspath(args.dir)
    args.func(args)


if __name__ == "__main__":
    main()
