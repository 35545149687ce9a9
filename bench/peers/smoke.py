#!/usr/bin/env python3
"""Smoke test of a peer server: bench/peers/smoke.py bridge|mautrix [PYTHON]

Starts the peer on a free port (homeserver URL: a port where nothing listens), sends 20
transactions of 100 m.room.message events, checks each is answered 200, checks a wrong
hs_token is refused, then SIGTERMs it and checks it printed `ready` and `events 2000` and
exited 0. PYTHON is the mautrix venv's python (default: the one install.sh prints).
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TXNS, PER_TXN = 20, 100
HS_TOKEN, AS_TOKEN = "bench-hs-token", "bench-as-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event(n: int) -> dict:
    body = f"Message {n}: " + ("the quick brown fox jumps over the lazy dog " * 6)
    return {
        "type": "m.room.message",
        "room_id": f"!room{n % 7 + 1}:localhost",
        "sender": f"@someone{n % 13}:localhost",
        "event_id": f"$smoke{n:08d}-{os.getpid()}",
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": body[:250]},
        "unsigned": {"age": 1},
    }


def put(conn: http.client.HTTPConnection, txn: str, token: str, events: list) -> int:
    conn.request(
        "PUT",
        f"/_matrix/app/v1/transactions/{txn}",
        body=json.dumps({"events": events}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    resp = conn.getresponse()
    resp.read()
    return resp.status


def main() -> int:
    peer = sys.argv[1]
    port, dead = free_port(), free_port()
    common = ["--port", str(port), "--hs-token", HS_TOKEN, "--as-token", AS_TOKEN,
              "--homeserver", f"http://127.0.0.1:{dead}"]
    if peer == "bridge":
        cmd = ["node", os.path.join(HERE, "bridge", "server.mjs"), *common]
    else:
        python = sys.argv[2] if len(sys.argv) > 2 else subprocess.run(
            [os.path.join(HERE, "install.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
        cmd = [python, os.path.join(HERE, "mautrix", "server.py"), *common]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line != "ready\n":
            print(f"{peer}: expected 'ready', got {line!r}; stderr: {proc.stderr.read()}")
            return 1
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        bad = put(conn, "smoke-bad-token", "wrong-token", [event(-1)])
        if not 400 <= bad < 500:
            print(f"{peer}: wrong hs_token answered {bad}")
            return 1
        start = time.monotonic()
        statuses = [put(conn, f"smoke-{i}", HS_TOKEN,
                        [event(i * PER_TXN + j) for j in range(PER_TXN)]) for i in range(TXNS)]
        elapsed = time.monotonic() - start
        if any(s != 200 for s in statuses):
            print(f"{peer}: statuses {statuses}")
            return 1
        conn.close()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = f"events {TXNS * PER_TXN}\n"
    ok = out == expected and proc.returncode == 0
    print(f"{peer}: wrong token -> {bad}; {TXNS} transactions -> 200 "
          f"({TXNS * PER_TXN / elapsed:.0f} events/s, unwarmed); after SIGTERM stdout "
          f"{out!r}, exit {proc.returncode}{'' if ok else ' (expected ' + repr(expected) + ', exit 0)'}")
    if err.strip():
        print(f"{peer}: stderr: {err.strip()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
