#!/usr/bin/env python3
"""A TCP echo server: each connection is greeted with one line, ``hello from NAME``, then every
byte received is sent back. It listens where ``GOLEM_VPN_PORT_7`` says (LocalNet's local
runtime hands the sandbox a loopback port for the VPN's port 7), else on port 7.

``--detach`` starts it in the background and returns once it accepts connections.

usage: echo_server.py --name NAME [--detach]
"""

from __future__ import annotations

import argparse
import os
import socket
import socketserver
import subprocess
import sys
import time


def address() -> tuple[str, int]:
    handed = os.environ.get("GOLEM_VPN_PORT_7")
    return ("127.0.0.1", int(handed)) if handed else ("0.0.0.0", 7)


def serve(name: str) -> None:
    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(f"hello from {name}\n".encode())
            while data := self.request.recv(65536):
                self.request.sendall(data)

    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(address(), Echo) as server:
        server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args()
    if not args.detach:
        serve(args.name)
        return 0
    subprocess.Popen(
        [sys.executable, __file__, "--name", args.name],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _host, port = address()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return 0
        except OSError:
            time.sleep(0.05)
    return 1


if __name__ == "__main__":
    sys.exit(main())
