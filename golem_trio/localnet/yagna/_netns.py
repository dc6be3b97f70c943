"""A private network namespace for the two-node real-daemon LocalNet.

Two yagna nodes meet on a *central net*: each connects to a hub's service-bus router, and the
daemon accepts the hub's address only with a port of at most four digits (yagna 0.17.6 parses
``CENTRAL_NET_HOST`` with ``:[0-9]{1,4}``). A fixed low port on the host's loopback could be
taken, and would let every local user onto the hub's bus; so the hub, the nodes and anvil run
in a network namespace of their own, where ``127.0.0.1:7464`` is always free and private.

:class:`PrivateNetwork` makes that namespace and one veth pair into it:

* the namespace is *anonymous* (``unshare --net``), held by a small process, the *holder*,
  that brings its loopback up and then sleeps. Every other process joins it with
  ``nsenter --net=/proc/<holder>/ns/net``. An anonymous namespace lives only as long as
  something is inside it, so it cannot outlive its processes: when they stop (or die with
  their lifelines, see ``_process.py``) the kernel frees it, and with it both ends of the
  veth pair. Nothing is left under ``/var/run/netns``.
* the veth pair links the host to the namespace on a private ``/30`` (``10.x.y.1`` on the
  host's side, ``10.x.y.2`` inside, chosen at random among subnets no host route covers). The
  services the host must reach (the daemons' REST APIs, anvil's JSON-RPC) listen on the inside
  address, so the SDK, the provider agents and the tests talk to them directly, with no
  user-space hop in between (the exec event stream and the long polls pass the kernel only).
  The namespace has no default route: nothing in it can reach past the host's end.

Everything inside is reached by address, never by name; the hub's bus and each node's own
net socket stay on the namespace's loopback.

Making a namespace needs root (``CAP_SYS_ADMIN`` and ``CAP_NET_ADMIN``) and the ``unshare``,
``nsenter`` (util-linux) and ``ip`` (iproute2) commands; where any of it is missing or the
kernel refuses, :class:`NamespacesUnavailable` says which.

Synchronous and Linux-only; the standard library only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Final, Self

from ._process import (
    Started,
    passthrough_env,
    spawn_process_group,
    stop_process_group,
)

__all__ = ["NAMESPACE_HINT", "NamespacesUnavailable", "PrivateNetwork", "namespaces_problem"]

NAMESPACE_HINT: Final = (
    "two yagna nodes meet in a private network namespace, which needs root (or CAP_SYS_ADMIN "
    "and CAP_NET_ADMIN) and the unshare, nsenter (util-linux) and ip (iproute2) commands"
)
"""What the two-node network needs, for error messages."""

_TOOLS: Final = ("unshare", "nsenter", "ip")
_READY: Final = re.compile(rb"^netns-ready (\d+)$", re.MULTILINE)
# The holder: loopback up, say which process holds the namespace, then wait (exec keeps the
# pid: unshare and sh exec in turn, so the pid printed is the one that stays).
_HOLDER_SCRIPT: Final = 'ip link set lo up || exit 1; echo "netns-ready $$"; exec sleep infinity'
_PREFIX_LENGTH: Final = 30
_SUBNET_ATTEMPTS: Final = 64
_POLL_INTERVAL: Final = 0.02


class NamespacesUnavailable(RuntimeError):
    """This process may not make a private network namespace (not root, a tool missing, or
    the kernel refused); the message says which."""


def namespaces_problem() -> str | None:
    """Why a :class:`PrivateNetwork` cannot be made here, in one line; ``None`` when it can.

    Checks the platform, the effective user and the commands; it does not try the kernel
    (:meth:`PrivateNetwork.start` does, and raises :class:`NamespacesUnavailable`)."""
    if not sys.platform.startswith("linux"):
        return f"{NAMESPACE_HINT}; this is not Linux"
    if os.geteuid() != 0:
        return f"{NAMESPACE_HINT}; this process does not run as root"
    missing = [tool for tool in _TOOLS if _which(tool) is None]
    if missing:
        return f"{NAMESPACE_HINT}; not found: {', '.join(missing)}"
    return None


def _which(tool: str) -> str | None:
    # ip lives in /sbin or /usr/sbin, which a user's PATH may leave out.
    path = os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which(tool, path=path)


def _tool(tool: str) -> str:
    found = _which(tool)
    if found is None:
        raise NamespacesUnavailable(f"{NAMESPACE_HINT}; not found: {tool}")
    return found


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes (all tables) and every address it holds."""
    networks: list[ipaddress.IPv4Network] = []
    ip = _tool("ip")
    for args in (["-j", "-4", "route", "show", "table", "all"], ["-j", "-4", "addr", "show"]):
        done = subprocess.run([ip, *args], capture_output=True, text=True, timeout=10, check=False)
        try:
            entries = json.loads(done.stdout or "[]")
        except ValueError:
            entries = []
        for entry in entries:
            dsts = [entry.get("dst")]
            dsts += [f"{a.get('local')}/{a.get('prefixlen')}" for a in entry.get("addr_info", [])]
            for dst in dsts:
                if not isinstance(dst, str) or dst == "default":
                    continue
                try:
                    networks.append(ipaddress.IPv4Network(dst, strict=False))
                except ValueError:
                    continue
    return networks


def _choose_subnet(taken: Sequence[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """A random ``/30`` in ``10.128.0.0/9`` that no host route or address overlaps."""
    pool = ipaddress.IPv4Network("10.128.0.0/9")
    count = 2 ** (_PREFIX_LENGTH - pool.prefixlen)
    for _ in range(_SUBNET_ATTEMPTS):
        offset = random.randrange(count) << (32 - _PREFIX_LENGTH)
        subnet = ipaddress.IPv4Network((int(pool.network_address) + offset, _PREFIX_LENGTH))
        if not any(subnet.overlaps(other) for other in taken):
            return subnet
    raise NamespacesUnavailable(f"no free /{_PREFIX_LENGTH} found in {pool} for the veth pair")


class PrivateNetwork(Started):
    """An anonymous network namespace with a veth pair to the host (see the module notes).

    Use it as a context manager, ``with PrivateNetwork.start() as network:``; on exit (even on
    an error or ``KeyboardInterrupt``) the holder is stopped and the host's end of the veth
    pair deleted; the namespace goes with its last process. Start the processes that live
    inside with :meth:`command` in front of their command line, and stop them first.

    Args:
        startup_timeout: seconds allowed for the holder to bring the namespace up.
        stop_timeout: seconds allowed for the holder to stop before SIGKILL.
        base_dir: where to create the temporary folder (the holder's log).
    """

    error = NamespacesUnavailable

    def __init__(
        self,
        *,
        startup_timeout: float = 10.0,
        stop_timeout: float = 3.0,
        base_dir: pathlib.Path | str | None = None,
    ) -> None:
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._base_dir = pathlib.Path(base_dir) if base_dir is not None else None
        self._dir: pathlib.Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._holder: int | None = None
        self._inode: int | None = None
        self._subnet: ipaddress.IPv4Network | None = None
        self._link = "gt" + os.urandom(5).hex()  # 12 characters, +h or +n: under IFNAMSIZ
        self._link_made = False
        super().__init__()

    @classmethod
    def start(
        cls,
        *,
        startup_timeout: float = 10.0,
        stop_timeout: float = 3.0,
        base_dir: pathlib.Path | str | None = None,
    ) -> Self:
        """Make the namespace and its veth pair; use the result in a ``with`` block.

        Raises:
            NamespacesUnavailable: not root, a command missing, or the kernel refused.
        """
        network = cls(startup_timeout=startup_timeout, stop_timeout=stop_timeout, base_dir=base_dir)
        network._boot()
        return network

    def _boot(self) -> None:
        problem = namespaces_problem()
        if problem is not None:
            raise NamespacesUnavailable(problem)
        self._claim_start()
        try:
            self._dir = pathlib.Path(tempfile.mkdtemp(prefix="netns-", dir=self._base_dir))
            self._spawn_holder()
            self._holder = self._wait_for_holder()
            self._inode = os.stat(self.namespace_path).st_ino
            self._make_veth()
        except BaseException:
            self.stop()
            raise

    def _spawn_holder(self) -> None:
        assert self._dir is not None
        cmd = [_tool("unshare"), "--net", "--", "/bin/sh", "-c", _HOLDER_SCRIPT]
        env = passthrough_env()
        env["PATH"] = env.get("PATH", os.defpath) + os.pathsep + "/usr/sbin:/sbin"
        with self.log_path.open("ab") as log:
            self._proc = spawn_process_group(cmd, env=env, cwd=self._dir, log=log)

    def _wait_for_holder(self) -> int:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            found = _READY.search(self.log_path.read_bytes())
            if found is not None:
                return int(found.group(1))
            code = proc.poll()
            if code is not None:
                raise NamespacesUnavailable(
                    f"{NAMESPACE_HINT}; unshare --net refused (exit status {code}): "
                    f"{self._log_line()}"
                )
            if time.monotonic() >= deadline:
                raise NamespacesUnavailable(
                    f"the network namespace did not come up within {self._startup_timeout} s: "
                    f"{self._log_line()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _make_veth(self) -> None:
        subnet = _choose_subnet(_host_networks())
        self._subnet = subnet
        host, inside = self.host_address, self.address
        prefix = f"/{subnet.prefixlen}"
        outer, inner = self._link + "h", self._link + "n"
        self._ip(
            "link",
            "add",
            outer,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            str(self.holder_pid),
        )
        self._link_made = True
        self._ip("addr", "add", host + prefix, "dev", outer)
        self._ip("link", "set", outer, "up")
        self._ip("addr", "add", inside + prefix, "dev", inner, inside_namespace=True)
        self._ip("link", "set", inner, "up", inside_namespace=True)

    def _ip(self, *args: str, inside_namespace: bool = False) -> None:
        cmd = [_tool("ip"), *args]
        if inside_namespace:
            cmd = self.command(cmd)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        if done.returncode != 0:
            raise NamespacesUnavailable(
                f"`ip {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}"
            )

    def stop(self) -> None:
        """Stop the holder and delete the host's end of the veth pair (which takes the other
        end with it). Idempotent; processes still inside keep the namespace until they end."""
        if not self._claim_stop():
            return
        try:
            if self._link_made:
                ip = _which("ip")
                if ip is not None:
                    subprocess.run(
                        [ip, "link", "del", self._link + "h"],
                        capture_output=True,
                        timeout=10,
                        check=False,
                    )
            proc, self._proc = self._proc, None
            if proc is not None:
                stop_process_group(proc, self._stop_timeout)
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    # -------------------------------------------------------------- properties

    @property
    def pid(self) -> int | None:
        """The holder's lifeline (its process group's leader) while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def holder_pid(self) -> int:
        """The process that holds the namespace."""
        if self._holder is None:
            raise NamespacesUnavailable("the network namespace is not started")
        return self._holder

    @property
    def namespace_path(self) -> str:
        """``/proc/<holder>/ns/net``: what ``nsenter --net=`` joins."""
        return f"/proc/{self.holder_pid}/ns/net"

    @property
    def namespace_inode(self) -> int:
        """The namespace's inode number: it identifies the namespace as long as it lives."""
        if self._inode is None:
            raise NamespacesUnavailable("the network namespace is not started")
        return self._inode

    @property
    def link_name(self) -> str:
        """The host's end of the veth pair."""
        return self._link + "h"

    @property
    def address(self) -> str:
        """The namespace's end of the veth pair: where services the host reaches listen."""
        return str(self._require_subnet().network_address + 2)

    @property
    def host_address(self) -> str:
        """The host's end of the veth pair."""
        return str(self._require_subnet().network_address + 1)

    @property
    def log_path(self) -> pathlib.Path:
        if self._dir is None:
            raise NamespacesUnavailable("the network namespace is not started")
        return self._dir / "holder.log"

    def command(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` run inside the namespace (``nsenter`` execs it: the pid stays the same)."""
        return [_tool("nsenter"), f"--net={self.namespace_path}", "--", *cmd]

    def __repr__(self) -> str:
        state = "stopped" if self._closed else ("running" if self._holder else "not started")
        parts = [f"state={state!r}"]
        if self._subnet is not None:
            parts.append(f"address={self.address!r}")
        return f"PrivateNetwork({', '.join(parts)})"

    def _require_subnet(self) -> ipaddress.IPv4Network:
        if self._subnet is None:
            raise NamespacesUnavailable("the network namespace is not started")
        return self._subnet

    def _log_line(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except (OSError, NamespacesUnavailable):
            return "(no output)"
        return text.splitlines()[-1] if text else "(no output)"
