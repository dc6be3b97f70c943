#!/usr/bin/env python3
"""A tiny HTTP server that answers every GET with who it is.

It listens on port 80 of the VM (inside a VPN), or where ``GOLEM_VPN_PORT_80`` says (LocalNet's
local runtime hands each sandbox a loopback port of its own for the VPN's port 80). Every
``GET`` is answered ``200`` with one line of JSON: the instance's ``--name``, the ``--provider``
it runs on, its VPN address (``GOLEM_VPN_IP``) and the request's path. ``POST`` echoes its body
after that line.

``--detach`` starts the server in the background (its own session, output to
``$GOLEM_ROOT/out/http_server.log``) and returns once it accepts connections; ``GOLEM_ROOT``
defaults to ``/golem``.

usage: http_server.py --name NAME [--provider NAME] [--detach]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: How long ``--detach`` waits for the server to accept connections, seconds.
STARTUP_S = 10.0


def listen_address() -> tuple[str, int]:
    handed = os.environ.get("GOLEM_VPN_PORT_80")
    if handed:
        return ("127.0.0.1", int(handed))
    return ("0.0.0.0", 80)


def make_handler(identity: dict[str, str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, extra: bytes = b"") -> None:
            body = json.dumps({**identity, "path": self.path}).encode() + b"\n" + extra
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._answer(self.rfile.read(length))

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def serve(name: str, provider: str) -> None:
    identity = {"name": name, "provider": provider, "ip": os.environ.get("GOLEM_VPN_IP", "")}
    server = ThreadingHTTPServer(listen_address(), make_handler(identity))
    server.daemon_threads = True
    server.serve_forever()


def detach(argv: list[str]) -> int:
    out = Path(os.environ.get("GOLEM_ROOT") or "/golem") / "out"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "http_server.log").open("ab") as log:
        subprocess.Popen(
            [sys.executable, __file__, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    host, port = listen_address()
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, port), 1).close()
            return 0
        except OSError:
            time.sleep(0.05)
    print(f"the server did not start within {STARTUP_S} s", file=sys.stderr)
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--provider", default="")
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args()
    if args.detach:
        return detach(["--name", args.name, "--provider", args.provider])
    serve(args.name, args.provider)
    return 0


if __name__ == "__main__":
    sys.exit(main())
