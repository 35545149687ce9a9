"""Benchmark peer: a mautrix-python AppService whose Matrix event handler only counts events.

    python server.py --port P --hs-token T --as-token A --homeserver URL

Listens on 127.0.0.1:P and prints `ready` once listening. On SIGTERM or SIGINT it prints
`events N` (how many events the handler was called with) and exits 0.
The state store is in memory (the default one writes mx-state.json) and nothing asks the
homeserver anything at startup: URL may have nothing behind it.
"""

import argparse
import asyncio
import logging
import signal
import sys

from mautrix.appservice import AppService, ASStateStore
from mautrix.client.state_store import MemoryStateStore
from mautrix.types import Event


class MemoryASStateStore(MemoryStateStore, ASStateStore):
    """In-memory appservice state store (mautrix ships file and Postgres ones only)."""

    def __init__(self) -> None:
        MemoryStateStore.__init__(self)
        ASStateStore.__init__(self)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hs-token", required=True)
    parser.add_argument("--as-token", required=True)
    parser.add_argument("--homeserver", required=True)
    args = parser.parse_args()

    count = 0

    appservice = AppService(
        server=args.homeserver,
        domain="localhost",
        as_token=args.as_token,
        hs_token=args.hs_token,
        bot_localpart="benchmautrix",
        id="chatsender-bench-mautrix",
        state_store=MemoryASStateStore(),
    )

    @appservice.matrix_event_handler
    async def on_event(_event: Event) -> None:
        nonlocal count
        count += 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    await appservice.start(host="127.0.0.1", port=args.port)
    print("ready", flush=True)
    await stop.wait()
    # Handlers run as background tasks after the transaction is answered; let any still
    # queued run before counting.
    await asyncio.sleep(0)
    print(f"events {count}", flush=True)
    try:
        await asyncio.wait_for(appservice.stop(), timeout=5)
    except Exception as e:  # an unclean shutdown doesn't change the count
        print(f"stopping: {e!r}", file=sys.stderr)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(main())
