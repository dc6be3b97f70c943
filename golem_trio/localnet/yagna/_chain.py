"""A local Ethereum chain (``anvil``) with a test payment token, for payment tests.

The real daemon's only payment driver is ``erc20``, which talks JSON-RPC to an Ethereum node
and moves an ERC-20 token. :class:`LocalChain` runs ``anvil`` (from the npm package
``@foundry-rs/anvil-linux-amd64``) on loopback as a stand-in for the Holesky test network
(chain id 17000, the id the driver's config fixes for ``holesky``), deploys the project's own
token (``contracts/Token.sol``, compiled into ``contracts/token.json`` by ``make token``) and
funds accounts::

    with LocalChain.start() as chain:
        token = chain.deploy_token()
        chain.mint("0x...", 1000)
        chain.set_eth_balance("0x...", 10)
        print(chain.token_balance("0x..."))  # Decimal('1000')

Pass the chain to :class:`~._node.YagnaNode` (``chain=``) to get a daemon whose
``erc20-holesky-tglm`` platform pays on it.

Like ``YagnaNode`` this module is synchronous: every call is a short, bounded, blocking
loopback request. From Trio code, call the methods through ``trio.to_thread.run_sync``.
``anvil`` runs in a process group of its own and is stopped by process id on exit, even on an
error or ``KeyboardInterrupt``. Blocks are mined every second (``--block-time 1``): the
daemon's RPC pool drops an endpoint whose newest block grows old. Each transaction sent here
is also mined at once (``evm_mine``), so set-up does not wait for the next block.

POSIX-only (process groups and signals).
"""

from __future__ import annotations

import decimal
import glob
import importlib.resources
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Self

import attrs
import httpx2

from ._process import (
    LOOPBACK,
    Started,
    passthrough_env,
    spawn_process_group,
    stop_process_group,
)

if TYPE_CHECKING:
    from ._netns import PrivateNetwork

__all__ = [
    "ANVIL_ENV_VAR",
    "ANVIL_NPM_PACKAGE",
    "ANVIL_VERSION",
    "LOCAL_CHAIN_ID",
    "TOKEN_DECIMALS",
    "AnvilNotInstalled",
    "LocalChain",
    "LocalChainError",
    "TokenArtifact",
    "anvil_install_command",
    "anvil_install_hint",
    "anvil_user_prefix",
    "find_anvil_binary",
    "from_base_units",
    "load_token_artifact",
    "to_base_units",
]

ANVIL_NPM_PACKAGE: Final = "@foundry-rs/anvil-linux-amd64"
"""The npm package that ships the ``anvil`` binary (version pinned in the Makefile)."""

LOCAL_CHAIN_ID: Final = 17000
"""Holesky's chain id: the daemon's payment config ties the ``holesky`` network to it."""

TOKEN_DECIMALS: Final = 18

ANVIL_VERSION: Final = "1.7.1"
"""The version of :data:`ANVIL_NPM_PACKAGE` the project is tested with (the Makefile's too)."""

ANVIL_ENV_VAR: Final = "GOLEM_TRIO_ANVIL"
"""Set it to the path of an ``anvil`` executable to use that one."""


def anvil_user_prefix() -> pathlib.Path:
    """The user-level npm prefix where :func:`find_anvil_binary` looks for anvil:
    ``$XDG_DATA_HOME/golem-trio/npm``, by default ``~/.local/share/golem-trio/npm``."""
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return pathlib.Path(data) / "golem-trio" / "npm"


def anvil_install_command() -> str:
    """The one command that installs anvil where :func:`find_anvil_binary` finds it."""
    prefix = str(anvil_user_prefix())
    home = os.path.expanduser("~")
    if prefix.startswith(home + os.sep):
        prefix = "~" + prefix[len(home) :]
    return f"npm install --prefix {prefix} {ANVIL_NPM_PACKAGE}@{ANVIL_VERSION}"


def anvil_install_hint() -> str:
    """How to get anvil, in one line: what :class:`AnvilNotInstalled` says."""
    return (
        f"anvil (npm package {ANVIL_NPM_PACKAGE}) is not installed; install it for your user "
        f"with: {anvil_install_command()} (or set {ANVIL_ENV_VAR} to an anvil executable)"
    )


_LISTENING = re.compile(rb"Listening on (\d+\.\d+\.\d+\.\d+):(\d+)")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_POLL_INTERVAL: Final = 0.05
_DEPLOY_GAS: Final = 2_000_000
_CALL_GAS: Final = 200_000


class AnvilNotInstalled(RuntimeError):
    """The ``anvil`` binary cannot be found; the message says how to install it."""


class LocalChainError(RuntimeError):
    """``anvil`` did not start, a JSON-RPC call failed, or a transaction reverted."""


@attrs.frozen
class TokenArtifact:
    """The compiled test token: ABI, init code and function selectors."""

    contract_name: str
    compiler: str
    source_sha256: str
    abi: list[dict[str, Any]] = attrs.field(repr=False)
    bytecode: str = attrs.field(repr=False)
    """Init code, ``0x``-prefixed hex."""
    selectors: Mapping[str, str] = attrs.field(repr=False)
    """Function signature (``"mint(address,uint256)"``) to its 4-byte selector in hex."""

    def selector(self, signature: str) -> str:
        """The ``0x``-less hex selector of ``signature``; ``KeyError`` if the token lacks it."""
        return self.selectors[signature]


def load_token_artifact() -> TokenArtifact:
    """Read ``contracts/token.json``, shipped with the package (rebuild it with ``make token``)."""
    contracts = importlib.resources.files("golem_trio.localnet.yagna").joinpath("contracts")
    resource = contracts.joinpath("token.json")
    raw = json.loads(resource.read_text(encoding="utf-8"))
    return TokenArtifact(
        contract_name=raw["contractName"],
        compiler=raw["compiler"],
        source_sha256=raw["sourceSha256"],
        abi=raw["abi"],
        bytecode=raw["bytecode"],
        selectors=dict(raw["methodIdentifiers"]),
    )


def to_base_units(amount: Decimal | int | str) -> int:
    """Whole token (or ether) amount to base units (``amount * 10**18``), exactly.

    Raises:
        ValueError: negative, not a number, or finer than ``10**-18``.
    """
    try:
        value = Decimal(amount)
    except decimal.InvalidOperation as exc:
        raise ValueError(f"not an amount: {amount!r}") from exc
    if not value.is_finite() or value < 0:
        raise ValueError(f"amounts must be finite and not negative, got {amount!r}")
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        scaled = value.scaleb(TOKEN_DECIMALS)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount!r} has more than {TOKEN_DECIMALS} decimal places")
        return int(scaled)


def from_base_units(units: int) -> Decimal:
    """Base units to a whole-token :class:`~decimal.Decimal`, exactly."""
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        value = Decimal(units).scaleb(-TOKEN_DECIMALS).normalize()
        # normalize() writes 1000 as 1E+3; keep whole numbers in plain notation.
        exponent = value.as_tuple().exponent
        return value.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else value


def _project_roots() -> list[pathlib.Path]:
    roots = [pathlib.Path(sys.prefix)]  # a virtualenv: .venv/npm
    source_root = pathlib.Path(__file__).resolve().parents[3]  # editable install: the checkout
    roots += [source_root, source_root / ".venv", pathlib.Path.cwd(), pathlib.Path.cwd() / ".venv"]
    roots.append(anvil_user_prefix().parent)  # its npm/ is the user-level prefix
    return list(dict.fromkeys(roots))


def find_anvil_binary() -> pathlib.Path:
    """Return the path of the ``anvil`` executable.

    Looks at ``$GOLEM_TRIO_ANVIL`` (and only there when it is set), then inside the npm
    package under ``npm/node_modules`` or ``node_modules`` of the virtualenv (``sys.prefix``),
    of the checkout this module lives in and of its ``.venv``, of the working directory and
    of the user-level prefix (:func:`anvil_user_prefix`); then on ``PATH``.

    Raises:
        AnvilNotInstalled: nothing was found, or ``$GOLEM_TRIO_ANVIL`` names no executable
            file; the message says how to install it.
    """
    candidates: list[pathlib.Path] = []
    override = os.environ.get(ANVIL_ENV_VAR)
    if override:
        path = pathlib.Path(override)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise AnvilNotInstalled(f"{ANVIL_ENV_VAR}={override} is not an executable file")
    for root in _project_roots():
        for modules in (root / "npm" / "node_modules", root / "node_modules"):
            # The package for this platform first, then any other build of anvil.
            candidates.append(modules / ANVIL_NPM_PACKAGE / "bin" / "anvil")
            pattern = str(modules / "@foundry-rs" / "anvil-*" / "bin" / "anvil")
            candidates += [pathlib.Path(p) for p in sorted(glob.glob(pattern))]
    on_path = shutil.which("anvil")
    if on_path is not None:
        candidates.append(pathlib.Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    searched = "\n".join(f"  {c}" for c in dict.fromkeys(candidates))
    raise AnvilNotInstalled(f"{anvil_install_hint()}\nSearched:\n{searched}")


def _address(value: str) -> str:
    if not _ADDRESS.fullmatch(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return value.lower()


def _word(value: int | str) -> str:
    """One 32-byte ABI word: an unsigned integer or an address."""
    if isinstance(value, str):
        return _address(value)[2:].rjust(64, "0")
    if value < 0 or value >= 2**256:
        raise ValueError(f"does not fit a uint256: {value}")
    return f"{value:064x}"


class LocalChain(Started):
    """``anvil`` on a free loopback port, with helpers for the test token.

    Use it as a context manager, ``with LocalChain(...) as chain:`` (starts on entry) or
    ``with LocalChain.start(...) as chain:``. On exit the process group is stopped (SIGTERM,
    then SIGKILL after ``stop_timeout``) and the temporary folder with its log is removed.

    Args:
        binary: the ``anvil`` executable; by default :func:`find_anvil_binary`.
        chain_id: the chain id to report; keep the default for the daemon's ``holesky``.
        block_time: seconds between blocks mined on the interval.
        startup_timeout: seconds allowed for ``anvil`` to answer JSON-RPC.
        stop_timeout: seconds allowed for a graceful stop before SIGKILL.
        rpc_timeout: seconds allowed for each JSON-RPC call, and for each receipt.
        base_dir: where to create the temporary folder (log).
        network: a private network namespace to run in (two-node LocalNet): anvil then
            listens on the namespace's address, which the host and the namespace's daemons
            both reach; by default it listens on the host's loopback.
    """

    error = LocalChainError

    def __init__(
        self,
        *,
        binary: pathlib.Path | str | None = None,
        chain_id: int = LOCAL_CHAIN_ID,
        block_time: int = 1,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        rpc_timeout: float = 10.0,
        base_dir: pathlib.Path | str | None = None,
        network: PrivateNetwork | None = None,
    ) -> None:
        self._network = network
        self._host = LOOPBACK if network is None else network.address
        self._binary = pathlib.Path(binary) if binary is not None else find_anvil_binary()
        self._chain_id = chain_id
        self._block_time = block_time
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._rpc_timeout = rpc_timeout
        self._base_dir = pathlib.Path(base_dir) if base_dir is not None else None

        self._dir: pathlib.Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._client: httpx2.Client | None = None
        self._dev_account: str | None = None
        self._token: str | None = None
        self._artifact: TokenArtifact | None = None
        self._request_id = 0
        super().__init__()

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def start(
        cls,
        *,
        binary: pathlib.Path | str | None = None,
        chain_id: int = LOCAL_CHAIN_ID,
        block_time: int = 1,
        startup_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        rpc_timeout: float = 10.0,
        base_dir: pathlib.Path | str | None = None,
        network: PrivateNetwork | None = None,
    ) -> Self:
        """Create a chain and start it; use it in a ``with`` block (or call :meth:`stop`)."""
        chain = cls(
            binary=binary,
            chain_id=chain_id,
            block_time=block_time,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            rpc_timeout=rpc_timeout,
            base_dir=base_dir,
            network=network,
        )
        chain._boot()
        return chain

    def _boot(self) -> None:
        self._claim_start()
        try:
            self._dir = pathlib.Path(tempfile.mkdtemp(prefix="anvil-", dir=self._base_dir))
            self._spawn()
            self._port = self._wait_for_port()
            # trust_env=False: loopback only, whatever proxy the environment names.
            self._client = httpx2.Client(trust_env=False, timeout=self._rpc_timeout)
            reported = int(self.rpc("eth_chainId", []), 16)
            if reported != self._chain_id:
                raise LocalChainError(f"anvil reports chain id {reported}, not {self._chain_id}")
            accounts = self.rpc("eth_accounts", [])
            if not accounts:
                raise LocalChainError("anvil has no unlocked dev account")
            self._dev_account = _address(accounts[0])
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop ``anvil`` (whole process group) and remove its folder. Idempotent."""
        if not self._claim_stop():
            return
        try:
            if self._client is not None:
                self._client.close()
            self._stop_process()
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)

    def _spawn(self) -> None:
        assert self._dir is not None
        cmd = [
            str(self._binary),
            "--host",
            self._host,
            "--port",
            "0",  # anvil picks a free port and logs it: no race with other processes
            "--chain-id",
            str(self._chain_id),
            "--block-time",
            str(self._block_time),
        ]
        if self._network is not None:
            cmd = self._network.command(cmd)
        with self.log_path.open("ab") as log:
            self._proc = spawn_process_group(cmd, env=passthrough_env(), cwd=self._dir, log=log)

    def _wait_for_port(self) -> int:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + self._startup_timeout
        while True:
            found = _LISTENING.search(self.log_path.read_bytes())
            if found is not None:
                return int(found.group(2))
            code = proc.poll()
            if code is not None:
                raise LocalChainError(
                    f"anvil exited with code {code} while starting\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise LocalChainError(
                    f"anvil did not listen within {self._startup_timeout} s\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc, self._stop_timeout)

    # -------------------------------------------------------------- properties

    @property
    def rpc_url(self) -> str:
        """The JSON-RPC endpoint, e.g. ``http://127.0.0.1:40123`` (in a private network: on
        the namespace's address)."""
        if self._port is None:
            raise LocalChainError("the chain is not started")
        return f"http://{self._host}:{self._port}"

    @property
    def chain_id(self) -> int:
        return self._chain_id

    @property
    def dev_account(self) -> str:
        """The first of anvil's unlocked, well-funded dev accounts; it deploys and mints."""
        if self._dev_account is None:
            raise LocalChainError("the chain is not started")
        return self._dev_account

    @property
    def token_address(self) -> str:
        """The test token's address (lowercase hex); raises until :meth:`deploy_token`."""
        if self._token is None:
            raise LocalChainError("no token deployed yet; call deploy_token()")
        return self._token

    @property
    def has_token(self) -> bool:
        return self._token is not None

    @property
    def pid(self) -> int | None:
        """anvil's process id while it runs, else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def log_path(self) -> pathlib.Path:
        if self._dir is None:
            raise LocalChainError("the chain is not started")
        return self._dir / "anvil.log"

    def __repr__(self) -> str:
        if self._closed:
            state = "stopped"
        elif self.running:
            state = "running"
        else:
            state = "not running"
        parts = [f"state={state!r}", f"chain_id={self._chain_id}"]
        if self._port is not None:
            parts.append(f"rpc_url={self.rpc_url!r}")
        if self._token is not None:
            parts.append(f"token={self._token!r}")
        return f"LocalChain({', '.join(parts)})"

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of anvil's log."""
        try:
            text = self.log_path.read_bytes()[-32 * 1024 :].decode("utf-8", errors="replace")
        except (OSError, LocalChainError):
            return "(no anvil log)"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}"

    # ------------------------------------------------------------------ JSON-RPC

    def rpc(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; returns ``result``.

        Raises:
            LocalChainError: transport error, HTTP error, or a JSON-RPC ``error``.
        """
        client = self._client
        if client is None or self._closed:
            raise LocalChainError("the chain is not running")
        self._request_id += 1
        body = {"jsonrpc": "2.0", "id": self._request_id, "method": method, "params": params}
        try:
            response = client.post(self.rpc_url, json=body)
            response.raise_for_status()
            reply = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise LocalChainError(f"JSON-RPC {method} failed: {exc}") from exc
        if not isinstance(reply, dict):
            raise LocalChainError(f"JSON-RPC {method}: unexpected reply {reply!r}")
        if reply.get("error") is not None:
            raise LocalChainError(f"JSON-RPC {method}: {reply['error']}")
        return reply.get("result")

    def send_transaction(self, *, data: str, to: str | None = None, gas: int = _CALL_GAS) -> Any:
        """Send a transaction from :attr:`dev_account`, mine it, and return its receipt.

        Raises:
            LocalChainError: the transaction reverted or no receipt came in time.
        """
        tx: dict[str, str] = {"from": self.dev_account, "data": data, "gas": hex(gas)}
        if to is not None:
            tx["to"] = _address(to)
        tx_hash = self.rpc("eth_sendTransaction", [tx])
        self.rpc("evm_mine", [])
        deadline = time.monotonic() + self._rpc_timeout
        while (receipt := self.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
            if time.monotonic() >= deadline:
                raise LocalChainError(f"no receipt for {tx_hash} within {self._rpc_timeout} s")
            time.sleep(_POLL_INTERVAL)
        if int(receipt.get("status", "0x0"), 16) != 1:
            raise LocalChainError(f"transaction {tx_hash} reverted: {receipt!r}")
        return receipt

    # --------------------------------------------------------------------- token

    @property
    def artifact(self) -> TokenArtifact:
        """The compiled token this chain deploys (read once from the package)."""
        if self._artifact is None:
            self._artifact = load_token_artifact()
        return self._artifact

    def deploy_token(self) -> str:
        """Deploy the test token from the shipped artifact; return its address.

        Raises:
            LocalChainError: a token is already deployed on this chain, or the deploy failed.
        """
        if self._token is not None:
            raise LocalChainError(f"the token is already deployed at {self._token}")
        receipt = self.send_transaction(data=self.artifact.bytecode, gas=_DEPLOY_GAS)
        address = receipt.get("contractAddress")
        if not isinstance(address, str):
            raise LocalChainError(f"deploy receipt names no contract: {receipt!r}")
        self._token = _address(address)
        return self._token

    def ensure_token(self) -> str:
        """The token's address, deploying it first if needed."""
        return self._token if self._token is not None else self.deploy_token()

    def mint(self, address: str, amount: Decimal | int | str) -> None:
        """Create ``amount`` whole tokens (18 decimals) for ``address``."""
        data = "0x" + self.artifact.selector("mint(address,uint256)")
        data += _word(address) + _word(to_base_units(amount))
        self.send_transaction(to=self.token_address, data=data)

    def token_base_units(self, address: str) -> int:
        """``balanceOf(address)`` in base units (``10**-18`` token)."""
        data = "0x" + self.artifact.selector("balanceOf(address)") + _word(address)
        result = self.rpc("eth_call", [{"to": self.token_address, "data": data}, "latest"])
        return int(result, 16)

    def token_balance(self, address: str) -> Decimal:
        """``address``'s token balance in whole tokens, exactly."""
        return from_base_units(self.token_base_units(address))

    # ----------------------------------------------------------------------- ETH

    def set_eth_balance(self, address: str, amount: Decimal | int | str) -> None:
        """Set ``address``'s ether balance to ``amount`` ETH (``anvil_setBalance``)."""
        self.rpc("anvil_setBalance", [_address(address), hex(to_base_units(amount))])

    def eth_balance(self, address: str) -> Decimal:
        """``address``'s ether balance in ETH, exactly."""
        return from_base_units(int(self.rpc("eth_getBalance", [_address(address), "latest"]), 16))
