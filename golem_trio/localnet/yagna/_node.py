"""Run a real ``yagna`` daemon on loopback, fully offline, for tests.

The daemon comes from the PyPI package ``golem-node`` (pinned to 0.17.6 in the
test extras). :class:`YagnaNode` starts it in a fresh temporary data directory
with a private set of loopback ports, creates two identities on it (a
requestor, the default identity, and a provider) plus one app key for each, and
stops it again, so one daemon can play both sides of a market negotiation::

    with YagnaNode.start() as node:
        print(node.api_url, node.requestor_id, node.provider_id)

How it stays offline and quiet:

* the REST API, the hybrid-net UDP socket and the GSB unix socket are bound to
  loopback or to the data directory;
* the relay address points at a loopback UDP port that this process keeps
  bound and never reads, so the daemon does no SRV lookup and finds no relay;
* every blockchain RPC endpoint of the built-in payment config, the HTTP(S)
  proxy (used by the release check) and the metrics URL point at a loopback TCP
  port that this process keeps bound without listening, so those connections
  are refused at once and no DNS name is ever resolved;
* metrics pushing is switched off and the activity watchdog limits are raised.

Payments: pass a started :class:`~._chain.LocalChain` as ``chain=`` and
the ``erc20-holesky-tglm`` platform (:data:`PAYMENT_PLATFORM`) pays on that local chain::

    with LocalChain.start() as chain, YagnaNode.start(chain=chain) as node:
        print(node.payment_platform, node.token_address)

The node then deploys the chain's test token (unless it already is), points the ``holesky``
network of the erc20 driver at the chain (``HOLESKY_GETH_ADDR``, ``HOLESKY_TGLM_CONTRACT_ADDRESS``,
no wrapper contract), writes a ``config-payments.toml`` into the data directory that keeps
only that network, with intervals of one second instead of the built-in 15-60 s and without
the multi-payment contract (every payment is a plain ``transfer``), gives the requestor
tokens and ether, and initialises the requestor as sender and the provider as receiver.

The hybrid net learns the set of local identities when it starts, so the
daemon is started once, the provider identity is created, and the daemon is
restarted; after that, calls between the two identities stay on the local bus.

Two nodes: one daemon hosting both sides never forwards the exec event stream to the
exe-unit and reports a requestor's termination on the provider's copy of the agreement
(``docs/daemon-notes.md`` §10.7). With ``role=`` a node holds one side only, and three nodes
in one private network namespace (``network=``, see ``_netns.py``) make a central net::

    hub = YagnaNode.start(role="hub", network=network)           # bus router at HUB_ADDRESS
    requestor = YagnaNode.start(role="requestor", network=network, hub=HUB_ADDRESS, chain=chain)
    providers = YagnaNode.start(role="providers", providers=2, network=network, hub=HUB_ADDRESS,
                                chain=chain)

Inside a namespace the REST API listens on the namespace's address (reachable from the host
over its veth pair), the net socket and the sinks stay on the namespace's loopback, and the
unix-socket bus in the data directory is reached from the host as usual.

This module is synchronous and uses only the standard library and ``attrs``.
It is POSIX-only (process groups and signals).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import attrs

from ._process import (
    LOOPBACK,
    Started,
    passthrough_env,
    spawn_process_group,
    stop_process_group,
)

if TYPE_CHECKING:
    from ._chain import LocalChain
    from ._netns import PrivateNetwork

__all__ = [
    "HUB_ADDRESS",
    "INSTALL_HINT",
    "PAYMENT_NETWORK",
    "PAYMENT_PLATFORM",
    "YAGNA_VERSION",
    "NodeIdentity",
    "NodeRole",
    "YagnaNode",
    "YagnaNodeError",
    "YagnaNotInstalled",
    "find_yagna_binary",
]

YAGNA_VERSION: Final = "0.17.6"
"""The daemon version this module is written for (PyPI ``golem-node``)."""

INSTALL_HINT: Final = (
    f"the real yagna daemon (PyPI package golem-node=={YAGNA_VERSION}) is not installed; "
    f"install it with: pip install 'golem-trio[yagna]' (or: pip install "
    f"golem-node=={YAGNA_VERSION}, in the environment golem-trio runs in)"
)

# Networks of the erc20 driver's built-in payment config (yagna 0.17.6). Setting
# <NETWORK>_GETH_ADDR replaces a network's RPC endpoints, including the DNS-based ones.
PAYMENT_NETWORKS: Final = (
    "mainnet",
    "goerli",
    "holesky",
    "hoodi",
    "sepolia",
    "polygon",
    "mumbai",
    "amoy",
)

PAYMENT_NETWORK: Final = "holesky"
"""The erc20 driver's network that a node with a local chain pays on (chain id 17000)."""

PAYMENT_PLATFORM: Final = f"erc20-{PAYMENT_NETWORK}-tglm"
"""The payment platform of that network, as used in allocations and market properties."""

_NO_CONTRACT: Final = "0x" + "0" * 40

# The erc20 driver's config for a node with a local chain. The daemon reads
# $YAGNA_DATADIR/config-payments.toml *instead of* its built-in one (yagna 0.17.6,
# core/payment-driver/erc20/config-payments.toml); this is that file cut down to the holesky
# network, with one-second intervals and no multi-payment, mint, faucet or wrapper contract.
# The environment (HOLESKY_GETH_ADDR and friends) still applies on top of it.
_PAYMENT_CONFIG: Final = """\
# Written by golem_trio.localnet.yagna for a local chain; the daemon reads it at start.
[engine]
process-interval = 1
process-interval-after-send = 1
process-interval-after-error = 1
process-interval-after-no-gas-or-token-start = 1
process-interval-after-no-gas-or-token-max = 5
process-interval-after-no-gas-or-token-increase = 1.5
report-alive-interval = 1
gather-interval = 1
gather-at-start = true
automatic-recover = false
ignore-deadlines = false

[chain.holesky]
chain-name = "Holesky"
chain-id = {chain_id}
currency-symbol = "tETH"
priority-fee = 0.000001
max-fee-per-gas = 20.0
transaction-timeout = 100
token = {{ address = "{token}", symbol = "tGLM" }}
confirmation-blocks = 0
external-source-check-interval = 300

[[chain.holesky.rpc-endpoints]]
names = "local"
endpoints = "{rpc_url}"
priority = 0
max-timeout-ms = 5000
verify-interval-secs = 300
allowed-head-behind-secs = 120
"""
_PAYMENT_CONFIG_LOADED: Final = b"Config file loaded successfully"

HUB_ADDRESS: Final = f"{LOOPBACK}:7464"
"""Where a hub's bus router listens inside a private network, and where central-net nodes
connect: the daemon takes a hub port of at most four digits (hence the private namespace)."""

NodeRole = Literal["both", "requestor", "providers", "hub"]
"""What a :class:`YagnaNode` holds: ``both`` the requestor and the provider identities (one
node plays both sides), ``requestor`` or ``providers`` one side of a two-node network, ``hub``
nothing (it only routes the bus of a central net)."""

_REQUESTOR_KEY_NAME: Final = "requestor"
_PROVIDER_ALIAS: Final = "prov"
_PROVIDER_KEY_NAME: Final = "provider"
_LOG_NAME: Final = "yagna.log"
_UNIX_SOCKET_PATH_MAX: Final = 100  # sun_path is 108 bytes on Linux; keep a margin
_POLL_INTERVAL: Final = 0.1


class YagnaNotInstalled(RuntimeError):
    """The ``yagna`` binary from the ``golem-node`` package cannot be found."""


class YagnaNodeError(RuntimeError):
    """The daemon did not start, stopped answering, or a ``yagna`` CLI command failed."""


@attrs.frozen
class NodeIdentity:
    """One identity on the daemon and the app key that acts as it."""

    node_id: str
    """``0x`` followed by 40 lowercase hex digits."""
    alias: str | None
    app_key: str = attrs.field(repr=False)
    """Secret: pass it as ``Authorization: Bearer <app_key>``; never log it."""


@attrs.frozen
class _Ports:
    api: int
    """TCP, the REST API."""
    net_bind: int
    """UDP, the hybrid net's own socket."""
    relay: int
    """UDP, held by this process and never read: the relay that is not there."""
    sink: int
    """TCP, held by this process without listening: connections are refused."""


def find_yagna_binary() -> pathlib.Path:
    """Return the path of the ``yagna`` executable installed by ``golem-node``.

    Looks next to the running interpreter (a virtualenv's ``bin``), in the
    interpreter's scripts and user-scripts directories, next to the
    ``golem_node`` package (``pip install --target``), then on ``PATH``.

    Raises:
        YagnaNotInstalled: nothing was found; the message says how to install it.
    """
    name = "yagna" + (sysconfig.get_config_var("EXE") or "")
    candidates: list[pathlib.Path] = [
        pathlib.Path(sys.executable).parent / name,
        pathlib.Path(sysconfig.get_path("scripts")) / name,
    ]
    with contextlib.suppress(KeyError, ValueError):
        user_scheme = sysconfig.get_preferred_scheme("user")
        candidates.append(pathlib.Path(sysconfig.get_path("scripts", user_scheme)) / name)
    spec = importlib.util.find_spec("golem_node")
    if spec is not None and spec.origin is not None:
        candidates.append(pathlib.Path(spec.origin).parent.parent / "bin" / name)
    on_path = shutil.which(name)
    if on_path is not None:
        candidates.append(pathlib.Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = "\n".join(f"  {c}" for c in dict.fromkeys(candidates))
    raise YagnaNotInstalled(f"{INSTALL_HINT}\nSearched:\n{searched}")


def _pick_free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _hold_port(kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((LOOPBACK, 0))
    except BaseException:
        sock.close()
        raise
    return sock


class YagnaNode(Started):
    """A real ``yagna`` daemon with a requestor and provider identities (or, with ``role``,
    one side of a two-node network, or its hub).

    Use it as a context manager, either ``with YagnaNode(...) as node:`` (starts
    on entry) or ``with YagnaNode.start(...) as node:`` (already started). On
    exit, even on an error or ``KeyboardInterrupt``, the daemon's process group
    is stopped (SIGTERM, repeated for up to ``stop_timeout`` seconds, then
    SIGKILL) and the data directory is removed. Every wait is bounded.

    Args:
        binary: the ``yagna`` executable; by default :func:`find_yagna_binary`.
        startup_timeout: seconds allowed for each daemon start to answer REST.
        stop_timeout: seconds allowed for a graceful stop before SIGKILL (a
            stop takes about 0.5 s once the daemon is up).
        cli_timeout: seconds allowed for each ``yagna`` CLI command.
        extra_env: variables added to (or overriding) the daemon's environment,
            e.g. ``HOLESKY_GETH_ADDR`` to point a payment network at a local chain.
        base_dir: where to create the temporary data directory.
        keep_data_dir: do not remove the data directory (and log) on exit.
        chain: a started local chain to pay on (see the module docstring); by
            default payments are off, since every RPC endpoint is unreachable.
        requestor_tglm: tokens minted for the requestor when ``chain`` is given.
        requestor_eth: ether (for gas) given to the requestor when ``chain`` is given.
        providers: how many provider identities to make (each with its own app key).
        role: which identities the node holds (:data:`NodeRole`). ``both`` (the default) is
            one daemon on the hybrid net playing both sides: the default identity is the
            requestor. ``requestor`` holds only that; ``providers`` only the provider
            identities (the first is the default identity); ``hub`` none: its bus router
            listens at :data:`HUB_ADDRESS` (inside ``network``) for central-net nodes.
        network: a private network namespace to run in (see ``_netns.py``): the REST API
            then listens on the namespace's address, reachable from the host.
        hub: the hub to join on a central net (``host:port``, port of at most four
            digits), for the ``requestor`` and ``providers`` roles; ``None``: the hybrid
            net, on its own.
    """

    error = YagnaNodeError

    def __init__(
        self,
        *,
        binary: pathlib.Path | str | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        cli_timeout: float = 30.0,
        extra_env: Mapping[str, str] | None = None,
        base_dir: pathlib.Path | str | None = None,
        keep_data_dir: bool = False,
        chain: LocalChain | None = None,
        requestor_tglm: Decimal | int | str = 1000,
        requestor_eth: Decimal | int | str = 10,
        providers: int = 1,
        role: NodeRole = "both",
        network: PrivateNetwork | None = None,
        hub: str | None = None,
    ) -> None:
        if role not in ("both", "requestor", "providers", "hub"):
            raise ValueError(f"unknown role {role!r}")
        if role in ("both", "providers") and providers < 1:
            raise ValueError(f"providers must be >= 1, got {providers}")
        if role in ("requestor", "hub"):
            providers = 0
        if (hub is not None) != (role in ("requestor", "providers")):
            raise ValueError(
                "a hub is joined by the requestor and providers roles, and only by them"
            )
        if role == "hub" and network is None:
            raise ValueError("a hub runs inside a private network (network=)")
        self._role: NodeRole = role
        self._network = network
        self._hub = hub
        self._provider_count = providers
        self._binary = pathlib.Path(binary) if binary is not None else find_yagna_binary()
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._cli_timeout = cli_timeout
        self._extra_env = dict(extra_env or {})
        self._base_dir = pathlib.Path(base_dir) if base_dir is not None else None
        self._keep_data_dir = keep_data_dir
        self._chain = chain
        self._requestor_tglm = Decimal(requestor_tglm)
        self._requestor_eth = Decimal(requestor_eth)

        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._data_dir: pathlib.Path | None = None
        self._ports: _Ports | None = None
        self._held: list[socket.socket] = []
        self._env: dict[str, str] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._requestor: NodeIdentity | None = None
        self._provider: NodeIdentity | None = None
        self._providers: list[NodeIdentity] = []
        super().__init__()
        self._startup_seconds: float | None = None

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        *,
        binary: pathlib.Path | str | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        cli_timeout: float = 30.0,
        extra_env: Mapping[str, str] | None = None,
        base_dir: pathlib.Path | str | None = None,
        keep_data_dir: bool = False,
        chain: LocalChain | None = None,
        requestor_tglm: Decimal | int | str = 1000,
        requestor_eth: Decimal | int | str = 10,
        providers: int = 1,
        role: NodeRole = "both",
        network: PrivateNetwork | None = None,
        hub: str | None = None,
    ) -> Self:
        """Create a node and start it; use the result in a ``with`` block (or call :meth:`stop`).

        ``providers`` provider identities are made (each with its own app key), all local to
        the daemon, so one daemon can host that many simulated providers. ``role``,
        ``network`` and ``hub`` make it one node of a two-node network (see the class)."""
        node = cls(
            binary=binary,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            cli_timeout=cli_timeout,
            extra_env=extra_env,
            base_dir=base_dir,
            keep_data_dir=keep_data_dir,
            chain=chain,
            requestor_tglm=requestor_tglm,
            requestor_eth=requestor_eth,
            providers=providers,
            role=role,
            network=network,
            hub=hub,
        )
        node._boot()
        return node

    def _boot(self) -> None:
        began = time.monotonic()
        self._claim_start()
        try:
            if self._chain is not None:
                self._chain.ensure_token()
            self._prepare()
            self._launch_first()
            self._create_identities()
            # The net learns the node's identities when it starts: the hybrid net keeps the
            # set of local ones, a central net binds each on the hub. The default identity
            # exists from the first start; any other one needs a second.
            if self._role == "both" or self._provider_count > 1:
                self._stop_daemon()
                self._launch_and_wait()
            self._check_identities()
            if self._chain is not None:
                self._init_payments(self._chain)
        except BaseException:
            self.stop()
            raise
        self._startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop the daemon (whole process group) and remove the data directory.

        Idempotent; safe to call from ``finally`` blocks and at interpreter exit.
        """
        if not self._claim_stop():
            return
        try:
            self._stop_daemon()
        finally:
            for sock in self._held:
                sock.close()
            self._held.clear()
            if self._data_dir is not None and not self._keep_data_dir:
                shutil.rmtree(self._data_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start the daemon again with the same data directory and ports.

        Needed after creating another identity with :meth:`cli`, so that the
        hybrid net treats it as local.
        """
        self._require_running()
        self._stop_daemon()
        self._launch_and_wait()
        self._check_identities()

    # -------------------------------------------------------------- properties

    @property
    def api_url(self) -> str:
        """Root URL of the REST API, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        return f"http://{self.host}:{self._require_ports().api}"

    @property
    def host(self) -> str:
        """The address the REST API listens on: loopback, or the private network's address."""
        return LOOPBACK if self._network is None else self._network.address

    @property
    def role(self) -> NodeRole:
        return self._role

    @property
    def network(self) -> PrivateNetwork | None:
        """The private network namespace the daemon runs in, if any."""
        return self._network

    @property
    def requestor(self) -> NodeIdentity:
        """The default identity, with the app key named ``requestor``."""
        if self._requestor is None:
            if self._started and self._role in ("providers", "hub"):
                raise YagnaNodeError(f"a {self._role} node holds no requestor identity")
            raise YagnaNodeError("the node is not started")
        return self._requestor

    @property
    def provider(self) -> NodeIdentity:
        """The first provider identity (alias ``prov``), with the app key named ``provider``."""
        if self._provider is None:
            if self._started and self._role in ("requestor", "hub"):
                raise YagnaNodeError(f"a {self._role} node holds no provider identity")
            raise YagnaNodeError("the node is not started")
        return self._provider

    @property
    def providers(self) -> list[NodeIdentity]:
        """Every provider identity (the first is :attr:`provider`); none on a requestor or
        hub node."""
        if not self._started:
            raise YagnaNodeError("the node is not started")
        return list(self._providers)

    @property
    def requestor_app_key(self) -> str:
        return self.requestor.app_key

    @property
    def provider_app_key(self) -> str:
        return self.provider.app_key

    @property
    def requestor_id(self) -> str:
        return self.requestor.node_id

    @property
    def provider_id(self) -> str:
        return self.provider.node_id

    @property
    def chain(self) -> LocalChain | None:
        """The local chain this node pays on, or None when payments are off."""
        return self._chain

    @property
    def payment_platform(self) -> str:
        """The platform that pays on :attr:`chain` (:data:`PAYMENT_PLATFORM`)."""
        self._require_chain()
        return PAYMENT_PLATFORM

    @property
    def token_address(self) -> str:
        """The address of the token that :attr:`payment_platform` pays in."""
        return self._require_chain().token_address

    @property
    def data_dir(self) -> pathlib.Path:
        """The daemon's data directory (``YAGNA_DATADIR``)."""
        if self._data_dir is None:
            raise YagnaNodeError("the node is not started")
        return self._data_dir

    @property
    def log_path(self) -> pathlib.Path:
        """The daemon's stdout and stderr, across restarts (inside :attr:`data_dir`)."""
        return self.data_dir / _LOG_NAME

    @property
    def gsb_url(self) -> str:
        """The daemon's service bus: a unix socket in :attr:`data_dir` (reachable from the
        host's namespace too), or for a hub ``tcp://`` :data:`HUB_ADDRESS` inside its network."""
        if self._role == "hub":
            return f"tcp://{HUB_ADDRESS}"
        return f"unix:{self.data_dir / 'yagna.sock'}"

    @property
    def binary(self) -> pathlib.Path:
        return self._binary

    @property
    def pid(self) -> int | None:
        """The daemon's process id while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def startup_seconds(self) -> float | None:
        """Wall time of the whole start (both daemon starts and the CLI calls)."""
        return self._startup_seconds

    @property
    def env(self) -> dict[str, str]:
        """A copy of the daemon's environment; also right for ``yagna`` CLI commands."""
        if not self._env:
            raise YagnaNodeError("the node is not started")
        return dict(self._env)

    def __repr__(self) -> str:
        # Never show app keys here.
        if self._closed:
            state = "stopped"
        elif self.running:
            state = "running"
        else:
            state = "not running"
        parts = [f"state={state!r}", f"role={self._role!r}"]
        if self._ports is not None:
            parts.append(f"api_url={self.api_url!r}")
        if self._requestor is not None:
            parts.append(f"requestor_id={self._requestor.node_id!r}")
        if self._provider is not None:
            parts.append(f"provider_id={self._provider.node_id!r}")
        if self._data_dir is not None:
            parts.append(f"data_dir={str(self._data_dir)!r}")
        return f"YagnaNode({', '.join(parts)})"

    # ------------------------------------------------------------------ helpers

    def cli(self, *args: str, timeout: float | None = None) -> str:
        """Run ``yagna <args>`` against this daemon and return its stdout.

        Raises:
            YagnaNodeError: non-zero exit or timeout. The message carries stderr
                only, never stdout (which may hold an app key).
        """
        self._require_ports()
        cmd = [str(self._binary), *args]
        limit = self._cli_timeout if timeout is None else timeout
        try:
            done = subprocess.run(
                cmd,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise YagnaNodeError(
                f"`yagna {' '.join(args)}` did not finish within {limit} s\n{self.log_tail()}"
            ) from exc
        if done.returncode != 0:
            raise YagnaNodeError(
                f"`yagna {' '.join(args)}` exited with code {done.returncode}: "
                f"{done.stderr.strip()}"
            )
        return done.stdout

    def cli_json(self, *args: str, timeout: float | None = None) -> Any:
        """Run ``yagna <args> --json`` and return the parsed output."""
        out = self.cli(*args, "--json", timeout=timeout)
        try:
            return json.loads(out)
        except ValueError as exc:
            raise YagnaNodeError(f"`yagna {' '.join(args)} --json` printed no JSON") from exc

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the daemon log, with the app keys masked."""
        if self._data_dir is None:
            return "(no daemon log)"
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no daemon log)"
        tail = "\n".join(text.splitlines()[-lines:])
        for ident in (self._requestor, *self._providers):
            if ident is not None:
                tail = tail.replace(ident.app_key, "<app-key>")
        return f"--- last lines of {self.log_path} ---\n{tail}"

    def get_json(self, path: str, app_key: str | None = None, timeout: float = 10.0) -> Any:
        """``GET {api_url}{path}`` (loopback, no proxy) and return the decoded JSON."""
        request = urllib.request.Request(self.api_url + path, method="GET")
        if app_key is not None:
            request.add_header("Authorization", f"Bearer {app_key}")
        with self._opener.open(request, timeout=timeout) as response:
            return json.loads(response.read())

    # ---------------------------------------------------------------- internals

    def _require_ports(self) -> _Ports:
        if self._ports is None:
            raise YagnaNodeError("the node is not started")
        return self._ports

    def _require_chain(self) -> LocalChain:
        if self._chain is None:
            raise YagnaNodeError("payments are off: this node was created without chain=")
        return self._chain

    def _require_running(self) -> None:
        if self._closed or not self._started or self._proc is None:
            raise YagnaNodeError("the node is not running")

    def _prepare(self) -> None:
        base = self._base_dir
        if base is None:
            base = pathlib.Path(tempfile.gettempdir())
            # The GSB unix socket lives in the data dir; keep its path short.
            if len(str(base)) > _UNIX_SOCKET_PATH_MAX - 40:
                base = pathlib.Path("/tmp")
        self._data_dir = pathlib.Path(tempfile.mkdtemp(prefix="yagna-", dir=base))
        if len(str(self._data_dir / "yagna.sock")) > _UNIX_SOCKET_PATH_MAX:
            raise YagnaNodeError(
                f"data dir path {self._data_dir} is too long for the GSB unix socket"
            )
        if self._chain is not None:
            config = _PAYMENT_CONFIG.format(
                chain_id=self._chain.chain_id,
                token=self._chain.token_address,
                rpc_url=self._chain.rpc_url,
            )
            (self._data_dir / "config-payments.toml").write_text(config, encoding="utf-8")
        self._choose_ports()

    def _choose_ports(self) -> None:
        for sock in self._held:
            sock.close()
        relay = _hold_port(socket.SOCK_DGRAM)
        self._held = [relay]
        sink = _hold_port(socket.SOCK_STREAM)
        self._held.append(sink)
        # Chosen while relay and sink are held, so they cannot collide with them.
        self._ports = _Ports(
            api=_pick_free_port(socket.SOCK_STREAM),
            net_bind=_pick_free_port(socket.SOCK_DGRAM),
            relay=relay.getsockname()[1],
            sink=sink.getsockname()[1],
        )
        self._env = self._build_env()

    def _build_env(self) -> dict[str, str]:
        ports = self._require_ports()
        data_dir = self.data_dir
        sink_url = f"http://{LOOPBACK}:{ports.sink}"
        # Everything the daemon may reach goes direct: loopback, and in a private network its
        # address (where the chain listens); the rest goes to the sink, refused.
        direct = dict.fromkeys([LOOPBACK, "localhost", "::1", self.host])
        if self._chain is not None:
            direct[urllib.parse.urlsplit(self._chain.rpc_url).hostname or LOOPBACK] = None
        no_proxy = ",".join(direct)
        env = passthrough_env()
        env.update(
            {
                "YAGNA_DATADIR": str(data_dir),
                "GSB_URL": self.gsb_url,
                "YAGNA_API_URL": self.api_url,
                "YA_NET_TYPE": "hybrid",
                "YA_NET_RELAY_HOST": f"{LOOPBACK}:{ports.relay}",
                "YA_NET_BIND_URL": f"udp://{LOOPBACK}:{ports.net_bind}",
                # The relay never answers; each attempt would otherwise hold the
                # start-up for the default 3 s.
                "YA_NET_SESSION_REQUEST_TIMEOUT": "500ms",
                "INACTIVITY_LIMIT_SECONDS": "86400",
                "UNRESPONSIVE_LIMIT_SECONDS": "86400",
                # stdout/stderr go to our own log file; no rotated copies.
                "YAGNA_LOG_DIR": "",
                "YAGNA_METRICS_URL": sink_url + "/",
                # The release check (GitHub) uses the system proxy settings.
                "HTTP_PROXY": sink_url,
                "HTTPS_PROXY": sink_url,
                "ALL_PROXY": sink_url,
                "http_proxy": sink_url,
                "https_proxy": sink_url,
                "all_proxy": sink_url,
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
            }
        )
        if self._hub is not None:
            env["YA_NET_TYPE"] = "central"
            env["CENTRAL_NET_HOST"] = self._hub
        for network in PAYMENT_NETWORKS:
            env[f"{network.upper()}_GETH_ADDR"] = sink_url
        if self._chain is not None:
            prefix = PAYMENT_NETWORK.upper()
            env[f"{prefix}_GETH_ADDR"] = self._chain.rpc_url
            env[f"{prefix}_TGLM_CONTRACT_ADDRESS"] = self._chain.token_address
            env[f"{prefix}_WRAPPER_CONTRACT_ADDRESS"] = _NO_CONTRACT
        env.update(self._extra_env)
        return env

    def _launch_first(self) -> None:
        """First start; if the API or net port was taken meanwhile, retry with new ports."""
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                self._launch_and_wait()
                return
            except YagnaNodeError:
                if attempt == attempts or "Address already in use" not in self.log_tail(200):
                    raise
                self._stop_daemon()
                self._choose_ports()

    def _launch_and_wait(self) -> None:
        self._spawn()
        self._wait_until_answering()

    def _spawn(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise YagnaNodeError("the daemon is already running")
        cmd = [str(self._binary), "service", "run", "--disable-metrics-push"]
        with self.log_path.open("ab") as log:
            log.write(f"\n===== starting: {' '.join(cmd)} =====\n".encode())
            log.flush()
            if self._network is not None:
                cmd = self._network.command(cmd)
            self._proc = spawn_process_group(cmd, env=self._env, cwd=self.data_dir, log=log)

    def _wait_until_answering(self) -> None:
        proc = self._proc
        assert proc is not None
        url = f"{self.api_url}/version/get"
        deadline = time.monotonic() + self._startup_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise YagnaNodeError(
                    f"yagna exited with code {code} while starting\n{self.log_tail()}"
                )
            try:
                with self._opener.open(url, timeout=2.0) as response:
                    body = json.loads(response.read())
                if isinstance(body, dict) and "current" in body:
                    return
            except (OSError, ValueError):
                pass  # not listening yet (URLError is an OSError)
            if time.monotonic() >= deadline:
                raise YagnaNodeError(
                    f"yagna did not answer {url} within {self._startup_timeout} s\n"
                    f"{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _create_identities(self) -> None:
        if self._role == "hub":
            return
        default_key = self.cli_json(
            "app-key",
            "create",
            _PROVIDER_KEY_NAME if self._role == "providers" else _REQUESTOR_KEY_NAME,
        )
        if not isinstance(default_key, str):
            raise YagnaNodeError("`yagna app-key create --json` did not print a JSON string")
        default_id = _ok_node_id(self.cli_json("id", "show"), "id show")
        if self._role == "providers":
            # A provider node's default identity is its first provider: one identity, one
            # start (a central net binds the identities the node has when it starts).
            self._providers.append(
                NodeIdentity(node_id=default_id, alias=None, app_key=default_key)
            )
        else:
            self._requestor = NodeIdentity(node_id=default_id, alias=None, app_key=default_key)
        for n in range(len(self._providers), self._provider_count):
            suffix = "" if n == 0 else f"-{n + 1}"
            alias = _PROVIDER_ALIAS + suffix
            created = self.cli_json("id", "create", alias, "--no-password")
            provider_id = _ok_node_id(created, "id create")
            provider_key = self.cli_json(
                "app-key", "create", _PROVIDER_KEY_NAME + suffix, "--id", provider_id
            )
            if not isinstance(provider_key, str):
                raise YagnaNodeError("`yagna app-key create --json` did not print a JSON string")
            self._providers.append(
                NodeIdentity(node_id=provider_id, alias=alias, app_key=provider_key)
            )
        self._provider = self._providers[0] if self._providers else None

    def _init_payments(self, chain: LocalChain) -> None:
        """Fund the requestor and make both identities ready to pay and be paid."""
        if _PAYMENT_CONFIG_LOADED not in self.log_path.read_bytes():
            raise YagnaNodeError(
                f"the daemon did not load {self.data_dir / 'config-payments.toml'}\n"
                f"{self.log_tail()}"
            )
        network = ("--network", PAYMENT_NETWORK)
        if self._requestor is not None:
            if self._requestor_tglm:
                chain.mint(self.requestor_id, self._requestor_tglm)
            if self._requestor_eth:
                chain.set_eth_balance(self.requestor_id, self._requestor_eth)
            self.cli("payment", "init", "--sender", *network, "--account", self.requestor_id)
        for provider in self._providers:
            self.cli("payment", "init", "--receiver", *network, "--account", provider.node_id)

    def _check_identities(self) -> None:
        identities = [*([self._requestor] if self._requestor else []), *self._providers]
        for ident in identities:
            try:
                me = self.get_json("/me", ident.app_key)
            except (OSError, ValueError) as exc:
                raise YagnaNodeError(
                    f"GET /me failed after start: {exc}\n{self.log_tail()}"
                ) from exc
            got = me.get("identity") if isinstance(me, dict) else me
            if got != ident.node_id:
                raise YagnaNodeError(f"GET /me answered identity {got!r}, expected {ident.node_id}")

    def _stop_daemon(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc, self._stop_timeout)


def _ok_node_id(reply: Any, what: str) -> str:
    """Extract ``nodeId`` from the ``{"Ok": {...}}`` shape of ``yagna id ... --json``."""
    ok = reply.get("Ok") if isinstance(reply, dict) else None
    node_id = ok.get("nodeId") if isinstance(ok, dict) else None
    if not isinstance(node_id, str) or not node_id.startswith("0x"):
        raise YagnaNodeError(f"`yagna {what} --json` gave an unexpected answer: {reply!r}")
    return node_id.lower()
