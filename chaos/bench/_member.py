"""One election member as its own OS process (for the benchmark and the tests).

    python -m chaos.bench._member --hosts H --cluster C --name c1 \
        [--priority 0] [--nofailover] [--session-timeout 1.0] [--no-fast-path] \
        [--claims 127.0.0.1:PORT] [--auth USER:PASSWORD] \
        [--liveness-host IP] [--liveness-advertise ADDRESS] [--liveness-port PORT]

SIGTERM -> graceful stop (the lease is released at once), exit 0. With
``--claims``, every few milliseconds that ``fresh_epoch()`` returns an epoch the
member sends a UDP datagram ``{"name", "epoch", "checked"}`` (``checked``: the
``time.monotonic()`` just before the lease was found fresh): the side effect an
independent watcher uses to catch two members acting as leader at the same time.
Prints one JSON line per event on stdout (ready, elected, demoted, role, fast_path).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import time
from types import FrameType

from election import ElectionConfig, ElectionObserver, Elector, FastPath, Role

CLAIM_INTERVAL_S = 0.002


class _Printer(ElectionObserver):
    def _emit(self, **data: object) -> None:
        data["t"] = time.time()
        print(json.dumps(data), flush=True)

    def on_elected(self, epoch: int) -> None:
        self._emit(event="elected", epoch=epoch)

    def on_demoted(self, reason: str) -> None:
        self._emit(event="demoted", reason=reason)

    def on_role_change(self, old: Role, new: Role, reason: str) -> None:
        self._emit(event="role", old=old.value, new=new.value, reason=reason)

    def on_fast_path_change(self, state: FastPath, reason: str) -> None:
        self._emit(event="fast_path", state=state.value, reason=reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.bench._member")
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--priority", type=int, default=0)
    parser.add_argument("--nofailover", action="store_true")
    parser.add_argument("--session-timeout", type=float, default=1.0)
    parser.add_argument("--no-fast-path", action="store_true")
    parser.add_argument("--claims", default=None)
    parser.add_argument("--auth", default=None)
    parser.add_argument("--liveness-host", default=None)
    parser.add_argument("--liveness-advertise", default=None)
    parser.add_argument("--liveness-port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("kazoo").setLevel(logging.WARNING)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    config = ElectionConfig(
        hosts=args.hosts,
        cluster=args.cluster,
        name=args.name,
        priority=args.priority,
        nofailover=args.nofailover,
        session_timeout=args.session_timeout,
        fast_path=not args.no_fast_path,
        liveness_host=args.liveness_host,
        liveness_advertise=args.liveness_advertise,
        liveness_port=args.liveness_port,
        auth_digest=auth,
    )
    elector = Elector(config, observers=[_Printer()])
    done = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    elector.start()
    print(json.dumps({"event": "ready", "name": args.name, "t": time.time()}), flush=True)
    claim_to: tuple[str, int] | None = None
    sock: socket.socket | None = None
    if args.claims:
        host, _, port = args.claims.rpartition(":")
        claim_to = (host, int(port))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while not done.is_set():
        if sock is not None and claim_to is not None:
            checked = time.monotonic()  # one clock for every process of this machine
            epoch = elector.fresh_epoch()
            if epoch is not None:
                # When the lease was found fresh: a process paused between this check
                # and the send delivers the claim late, which is no second leader.
                claim = {"name": args.name, "epoch": epoch, "checked": checked}
                message = json.dumps(claim).encode()
                sock.sendto(message, claim_to)
        done.wait(CLAIM_INTERVAL_S if sock is not None else 0.5)
    elector.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
