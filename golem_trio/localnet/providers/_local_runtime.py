"""The *local* runtime: an activity's commands really run, as processes, in a sandbox folder.

This is for development, not isolation. It gives an image's programs the paths they expect
(``/golem/...``) and keeps one activity's processes together; it does not protect the host from
them (the host's ``/usr`` and ``/etc`` are visible read-only, the network is shared unless
``isolate_network`` is set, and the processes run as the user running LocalNet).

Images
    An *image* is a local folder registered with an :class:`ImageStore`; its hash (sha3-224 of
    a deterministic digest of the folder's content, see :func:`image_hash`) stands in for the
    registry hash, so ``vm.repo(image_hash=...)`` style demands find it offline. The folder's
    content becomes the sandbox's ``/golem`` (an image with ``run/service.py`` offers
    ``/golem/run/service.py``); ``/golem/{input,output,work,resource,run,out}`` always exist.
    ``ImageStore.register(folder, as_hash=...)`` lets a folder stand in for a published image
    of that hash; :mod:`._images` finds folders that say so in a ``golem-image.json``.

The sandbox
    ``deploy`` copies the image into a fresh folder under the runtime root and starts one
    bubblewrap (``bwrap``, Debian package ``bubblewrap``) process for the activity, with that
    folder bound at ``/golem``, the host's ``/usr``, ``/bin``, ``/lib*``, ``/sbin`` and
    ``/etc`` read-only, fresh ``/proc``, ``/dev`` and ``/tmp``, its own PID, IPC and UTS
    namespaces, and optionally no network. Inside it runs a small command server
    (:mod:`._sandbox_server`, with the sandbox's ``python3``), to which every ``run`` is
    handed; so a process a command starts in the background is still there, with the same
    PID, for the next command, as in a VM. Each command has a time limit (its process group is
    killed) and caps on its stdout and stderr (truncated; the result's message says so).
    ``terminate`` kills the sandbox's PID namespace, which ends every process in it, and
    removes the folder. Where bubblewrap is missing, ``deploy`` fails with
    :class:`BubblewrapMissing` (install it with ``apt-get install bubblewrap``); paths are never
    silently rewritten.

Transfers
    As the real exe-unit does: an ``http(s)://`` source is fetched with ``GET`` into the
    sandbox path named by the destination (``container:/golem/...`` or a bare
    ``/golem/...``), and an ``http(s)://`` destination receives the sandbox file by ``PUT``.
    A ``hash:sha3:<hex>:<url>`` source is checked against its digest. Paths must stay
    inside ``/golem`` (no ``..``, no symlinks out). Only loopback hosts are allowed unless
    ``allow_remote_transfers`` is set. ``gftp://`` is left to the exe-unit, which moves the
    file itself into :meth:`LocalRuntime.container_file`; archives (``format``) and
    ``fileset`` are not supported.

VPN port hand-off
    A process in the sandbox shares the host's network (unless ``isolate_network``), so it
    cannot listen on the VPN port it would use in a VM (``80`` for many services: several
    activities would collide). Instead the runtime hands it a host port: for every VPN port in
    ``LocalRuntimeConfig.vpn_ports``, and every one the image's manifest lists
    (``"vpn_ports": [80]`` in ``golem-image.json``), it reserves a free port on ``127.0.0.1``
    at ``deploy``
    and tells every command about it through the environment, ``GOLEM_VPN_PORT_<vpn port>=
    <host port>`` (for example ``GOLEM_VPN_PORT_80=41873``), and in the file
    ``/golem/.vpn-ports.json`` (``{"80": 41873}``); ``GOLEM_VPN_IP`` is the activity's own
    VPN address from ``deploy.net[0].nodeIp`` when given. The service listens on
    ``127.0.0.1:$GOLEM_VPN_PORT_80``; LocalNet's VPN websocket for ``.../tcp/<ip>/80`` asks
    :meth:`LocalRuntime.vpn_endpoint` for ``80`` and bridges the websocket's bytes to the TCP
    address it answers. The runtime keeps its VPN address (``vpn_ip``), so that two
    activities of one provider in one network are told apart by address.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import itertools
import json
import logging
import os
import posixpath
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import httpx2
import trio

from ._runtime import CommandOutcome, RuntimeContext, RuntimeFailure

__all__ = [
    "BubblewrapMissing",
    "ImageStore",
    "LocalRuntime",
    "LocalRuntimeConfig",
    "UnknownImage",
    "image_hash",
    "local_runtime_factory",
]

logger = logging.getLogger("golem_trio.localnet.local_runtime")

TASK_PACKAGE = "golem.srv.comp.task_package"
#: The folders every sandbox's ``/golem`` has.
GOLEM_DIRS = ("input", "output", "work", "resource", "run", "out")
#: Where the command server's script is bound inside the sandbox.
_SERVER_PATH = "/.exe-unit/server.py"
_SERVER_SOURCE = Path(__file__).with_name("_sandbox_server.py")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_HASH_RE = re.compile(r"^hash:(?://)?sha3:([0-9a-fA-F]+)(?::.*)?$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{56}$")
_LOWER_HEX_RE = re.compile(r"^[0-9a-f]{56}\Z")
_CHUNK = 1 << 16
#: ``hash:sha3:<hex>:<url>`` (or ``hash://sha3:``): a download checked against its digest.
_VERIFIED_RE = re.compile(r"^hash:(?://)?sha3:([0-9a-fA-F]+):(.+)$")
_SHA3_BY_HEX_LENGTH = {56: "sha3_224", 64: "sha3_256", 96: "sha3_384", 128: "sha3_512"}


class BubblewrapMissing(RuntimeFailure):
    """The local runtime needs bubblewrap and cannot find it."""

    def __init__(self, bwrap: str) -> None:
        super().__init__(
            f"bubblewrap ({bwrap!r}) not found: the local runtime runs commands under "
            "bubblewrap; install it with `apt-get install bubblewrap`"
        )
        self.bwrap = bwrap


class UnknownImage(RuntimeFailure, KeyError):
    """No image registered under that hash."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown image"


# --- images ---------------------------------------------------------------------------------------


def image_hash(folder: str | os.PathLike[str]) -> str:
    """sha3-224 hex of a deterministic digest of ``folder``'s content: every entry's relative
    path, kind, executable bit and content (a file's sha3-256, a symlink's target), in sorted
    order. Timestamps and owners do not count."""
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {str(root)!r} is not a directory")
    digest = hashlib.sha3_224()
    entries: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        entries.extend(base / name for name in dirnames)
        entries.extend(base / name for name in filenames)
    for path in sorted(entries, key=lambda p: p.relative_to(root).as_posix()):
        relative = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            record = f"l {relative} {os.readlink(path)}"
        elif stat.S_ISDIR(info.st_mode):
            record = f"d {relative}"
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha3_256()
            with path.open("rb") as file:
                for chunk in iter(lambda: file.read(_CHUNK), b""):
                    content.update(chunk)
            executable = "x" if info.st_mode & 0o111 else "-"
            record = f"f {relative} {executable} {content.hexdigest()}"
        else:
            continue
        digest.update(record.encode("utf-8", "surrogateescape") + b"\0")
    return digest.hexdigest()


def parse_image_hash(task_package_or_hash: str) -> str:
    """The hex hash in a ``golem.srv.comp.task_package`` value (``hash:sha3:<hex>:<url>``,
    ``hash://sha3:<hex>:<url>``) or a bare hex hash, lower case."""
    value = task_package_or_hash.strip()
    match = _HASH_RE.match(value)
    if match is not None:
        return match.group(1).lower()
    if _HEX_RE.match(value):
        return value.lower()
    raise UnknownImage(f"not an image hash or task package: {task_package_or_hash!r}")


class ImageStore:
    """Local folders registered as images, addressed by their :func:`image_hash`.

    The folder is read at ``deploy`` (copied into the sandbox); registering does not copy it.
    """

    def __init__(self) -> None:
        self._images: dict[str, Path] = {}

    def register(self, folder: str | os.PathLike[str], *, as_hash: str | None = None) -> str:
        """Register ``folder`` as an image; its hash (what ``vm.repo(image_hash=...)`` takes).

        By default the hash is the folder's own :func:`image_hash`. With ``as_hash`` (56
        lower-case hex digits, a published image's sha3-224) the folder stands in for that
        image instead, so a demand naming the published hash gets this folder; a malformed
        ``as_hash`` is a :class:`ValueError`.
        """
        path = Path(folder).resolve()
        if as_hash is None:
            digest = image_hash(path)
        else:
            if not isinstance(as_hash, str) or _LOWER_HEX_RE.match(as_hash) is None:
                raise ValueError(
                    f"as_hash must be a sha3-224 image hash (56 lower-case hex digits), "
                    f"not {as_hash!r}"
                )
            if not path.is_dir():
                raise NotADirectoryError(f"image folder {str(path)!r} is not a directory")
            digest = as_hash
        self._images[digest] = path
        return digest

    def image_for(self, task_package_or_hash: str) -> Path:
        """The folder of the image a task package (``hash:sha3:<hex>:<url>``) or bare hex hash
        names; :class:`UnknownImage` when none is registered."""
        digest = parse_image_hash(task_package_or_hash)
        try:
            return self._images[digest]
        except KeyError:
            raise UnknownImage(
                f"image {digest} is not registered with this LocalNet "
                "(register its folder with ImageStore.register)"
            ) from None

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and digest.lower() in self._images

    def __len__(self) -> int:
        return len(self._images)


# --- the runtime ----------------------------------------------------------------------------------


@attrs.frozen
class LocalRuntimeConfig:
    """How local runtimes run their sandboxes."""

    #: Where sandboxes are made (a fresh folder per activity); the system temp dir by default.
    root: Path | None = None
    #: The bubblewrap executable (a name looked up on ``PATH``, or a path).
    bwrap: str = "bwrap"
    #: The python3 the command server runs with, as seen inside the sandbox.
    python: str = "python3"
    #: Time limit of one ``run`` command, seconds.
    command_timeout: float = 300.0
    #: Cap on each of a command's stdout and stderr, bytes.
    output_limit: int = 1 << 20
    #: Give the sandbox no network at all (then the VPN port hand-off is off).
    isolate_network: bool = False
    #: Allow transfers to and from hosts other than loopback.
    allow_remote_transfers: bool = False
    #: Time limit and size cap of one transfer.
    transfer_timeout: float = 300.0
    max_transfer_bytes: int = 1 << 30
    #: VPN ports handed a host port each (see the module docs).
    vpn_ports: tuple[int, ...] = ()
    #: How long the sandbox may take to come up.
    startup_timeout: float = 15.0


class _AsyncReader(Protocol):
    async def read(self, size: int) -> bytes: ...


class _FileBody:
    """A file's content as an async iterator of chunks (a PUT body)."""

    def __init__(self, file: _AsyncReader) -> None:
        self.file = file

    def __aiter__(self) -> _FileBody:
        return self

    async def __anext__(self) -> bytes:
        chunk: bytes = await self.file.read(_CHUNK)
        if not chunk:
            raise StopAsyncIteration
        return chunk


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _manifest_vpn_ports(image: Path) -> list[int]:
    """The ``vpn_ports`` of the image folder's ``golem-image.json`` (none when it has no
    readable manifest; the manifest is validated where images are discovered)."""
    try:
        data = json.loads((image / "golem-image.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    ports = data.get("vpn_ports") if isinstance(data, dict) else None
    if not isinstance(ports, list):
        return []
    return [p for p in ports if isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536]


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LocalRuntime:
    """Runs one activity's commands in a bubblewrap sandbox (see the module docs).

    ``image`` is the image folder, or None with ``image_problem`` saying why (``deploy`` then
    fails with that message). Every method's waits are bounded; ``terminate`` is idempotent
    and, cancelled or not, leaves no process or folder behind.
    """

    def __init__(
        self,
        image: Path | None,
        config: LocalRuntimeConfig | None = None,
        *,
        image_problem: str | None = None,
        name: str = "activity",
    ) -> None:
        self.image = image
        self.image_problem = image_problem
        self.config = config or LocalRuntimeConfig()
        self.name = name
        #: The per-activity folder (``golem/`` in it is the sandbox's ``/golem``).
        self.folder: Path | None = None
        self.vpn_host_ports: dict[int, int] = {}
        #: The activity's own VPN address, from ``deploy``'s ``net[0].nodeIp``.
        self.vpn_ip: str | None = None
        self._env: dict[str, str] = {}
        self._process: trio.Process | None = None
        self._child_pid: int | None = None
        self._buffer = bytearray()
        self._lock = trio.Lock()
        self._ids = itertools.count(1)
        self._cpu = 0.0
        self._deployed_at: float | None = None
        self._ended_at: float | None = None
        self._terminated = False
        self._broken: str | None = None

    @property
    def golem(self) -> Path:
        """The host folder that is ``/golem`` in the sandbox."""
        if self.folder is None:
            raise RuntimeFailure("not deployed")
        return self.folder / "golem"

    # --- deploy -----------------------------------------------------------------------------------

    def _find_bwrap(self) -> str:
        bwrap = self.config.bwrap
        found = shutil.which(bwrap)
        if found is None:
            raise BubblewrapMissing(bwrap)
        return found

    def _prepare(self, params: Mapping[str, Any]) -> Path:
        """Make the sandbox folder (runs in a thread)."""
        assert self.image is not None
        root = self.config.root
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"golem-{self.name[:16]}-", dir=root))
        golem = folder / "golem"
        shutil.copytree(self.image, golem, symlinks=True)
        for name in GOLEM_DIRS:
            (golem / name).mkdir(exist_ok=True)
        volumes = params.get("volumes")
        for volume in volumes if isinstance(volumes, Mapping | list) else ():
            if isinstance(volume, str) and volume.startswith("/golem/"):
                inside = self._container_path(golem, volume)
                inside.mkdir(parents=True, exist_ok=True)
        if self.vpn_host_ports:
            ports = {str(k): v for k, v in self.vpn_host_ports.items()}
            (golem / ".vpn-ports.json").write_text(json.dumps(ports))
        return folder

    def _bwrap_argv(self, bwrap: str, folder: Path, params: Mapping[str, Any]) -> list[str]:
        # No --die-with-parent: its death signal follows the *thread* that spawned bwrap, and
        # trio spawns processes from worker threads that exit after 10 s idle, which killed
        # sandboxes mid-life. If this process dies, the command server's stdin closes, it
        # exits, and with it (PID 1's child) the sandbox's PID namespace and every process in it.
        argv = [bwrap, "--unshare-pid", "--unshare-ipc", "--new-session"]
        if self.config.isolate_network:
            argv.append("--unshare-net")
        hostname = params.get("hostname")
        argv.append("--unshare-uts")
        if isinstance(hostname, str) and hostname:
            argv += ["--hostname", hostname]
        argv += ["--ro-bind", "/usr", "/usr"]
        for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / top
            if host.is_symlink():
                argv += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                argv += ["--ro-bind", str(host), str(host)]
        argv += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
        argv += ["--bind", str(folder / "golem"), "/golem"]
        argv += ["--ro-bind", str(_SERVER_SOURCE), _SERVER_PATH]
        argv += ["--chdir", "/golem/work"]
        argv += [self.config.python, "-I", "-S", _SERVER_PATH, "--own-pid-namespace"]
        return argv

    async def deploy(self, params: Mapping[str, Any]) -> None:
        """Make the sandbox and start its command server. Cancelled, it leaves nothing behind."""
        if self.folder is not None or self._terminated:
            raise RuntimeFailure("already deployed (or terminated)")
        if self.image is None:
            raise RuntimeFailure(self.image_problem or "no image for this activity")
        bwrap = self._find_bwrap()
        if not self.config.isolate_network:
            listed = await trio.to_thread.run_sync(_manifest_vpn_ports, self.image)
            wanted = set(self.config.vpn_ports) | set(listed)
            self.vpn_host_ports = {port: _free_loopback_port() for port in sorted(wanted)}
        self._env = self._command_env(params)
        self._deployed_at = trio.current_time()
        try:
            self.folder = await trio.to_thread.run_sync(self._prepare, params)
            await self._start_server(bwrap, params)
        except BaseException:
            with trio.move_on_after(20, shield=True):
                await self._teardown()
            raise

    def _command_env(self, params: Mapping[str, Any]) -> dict[str, str]:
        env = {"PATH": _PATH, "HOME": "/golem/work", "LANG": "C.UTF-8"}
        given = params.get("env")
        if isinstance(given, Mapping):
            env.update({str(k): str(v) for k, v in given.items()})
        net = params.get("net")
        if isinstance(net, Sequence) and net and isinstance(net[0], Mapping):
            node_ip = net[0].get("nodeIp")
            if isinstance(node_ip, str):
                env["GOLEM_VPN_IP"] = node_ip
                self.vpn_ip = node_ip
        for vpn_port, host_port in self.vpn_host_ports.items():
            env[f"GOLEM_VPN_PORT_{vpn_port}"] = str(host_port)
        return env

    async def _start_server(self, bwrap: str, params: Mapping[str, Any]) -> None:
        assert self.folder is not None
        argv = self._bwrap_argv(bwrap, self.folder, params)
        info_read, info_write = os.pipe()
        argv[1:1] = ["--info-fd", str(info_write)]
        log = await trio.to_thread.run_sync(Path.open, self.folder / "sandbox.log", "wb")
        try:
            self._process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                pass_fds=(info_write,),
                env={"PATH": _PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        except FileNotFoundError:
            os.close(info_read)
            raise BubblewrapMissing(bwrap) from None
        except OSError as exc:
            os.close(info_read)
            raise RuntimeFailure(f"cannot run bubblewrap ({bwrap}): {exc}") from exc
        finally:
            os.close(info_write)
            log.close()
        info = trio.lowlevel.FdStream(info_read)
        reply: dict[str, Any] = {}
        try:
            with trio.move_on_after(self.config.startup_timeout) as scope:
                try:
                    reply = await self._request({"op": "hello"})
                except trio.BrokenResourceError:
                    raise RuntimeFailure(
                        f"sandbox did not start: {await self._log_tail()}"
                    ) from None
                raw = b""
                while True:
                    chunk = await info.receive_some(4096)
                    raw += chunk
                    if not chunk:
                        break
                    try:
                        self._child_pid = int(json.loads(raw)["child-pid"])
                        break
                    except (ValueError, KeyError, TypeError):
                        continue
        finally:
            await info.aclose()
        if scope.cancelled_caught or not reply.get("ok"):
            raise RuntimeFailure(f"sandbox did not start: {await self._log_tail()}")

    async def _log_tail(self) -> str:
        await trio.lowlevel.checkpoint()
        if self.folder is None:
            return ""
        path = self.folder / "sandbox.log"
        try:
            data = await trio.Path(path).read_bytes()
        except OSError:
            return ""
        return data[-2000:].decode(errors="replace").strip() or "(no diagnostics)"

    async def start(self, args: Sequence[str]) -> None:
        """Nothing to do: the sandbox is up since ``deploy``."""
        await trio.lowlevel.checkpoint()
        if self._process is None:
            raise RuntimeFailure("not deployed")

    # --- the command server -----------------------------------------------------------------------

    async def _send(self, message: Mapping[str, Any]) -> None:
        assert self._process is not None
        assert self._process.stdin is not None
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        # A half-written request would break the channel: never cancel a send midway.
        with trio.move_on_after(5, shield=True) as scope:
            await self._process.stdin.send_all(line)
        if scope.cancelled_caught:
            self._broken = "the sandbox stopped reading commands"
            raise trio.BrokenResourceError(self._broken)

    async def _receive(self, request_id: int) -> dict[str, Any]:
        """The reply to ``request_id``; replies to requests given up on are skipped."""
        assert self._process is not None
        assert self._process.stdout is not None
        await trio.lowlevel.checkpoint()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                reply: dict[str, Any] = json.loads(line)
                if reply.get("id") == request_id:
                    return reply
                continue
            chunk = await self._process.stdout.receive_some(_CHUNK)
            if not chunk:
                self._broken = "the sandbox ended"
                raise trio.BrokenResourceError(self._broken)
            self._buffer += chunk

    async def _request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        request_id = next(self._ids)
        async with self._lock:
            await self._send({**message, "id": request_id})
            try:
                return await self._receive(request_id)
            except trio.Cancelled:
                if message.get("op") == "run" and self._broken is None:
                    with (
                        trio.move_on_after(2, shield=True),
                        contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
                    ):
                        await self._send({"op": "kill", "id": request_id})
                raise

    # --- run --------------------------------------------------------------------------------------

    async def run(
        self, entry_point: str, args: Sequence[str], capture: Mapping[str, Any] | None
    ) -> CommandOutcome:
        """Run ``entry_point args...`` in the sandbox (``cwd`` ``/golem/work``); its exit code
        and capped output. Cancelled, the command's process group is killed."""
        if self._process is None or self._terminated:
            await trio.lowlevel.checkpoint()
            return CommandOutcome(exit_code=-1, message="the sandbox is not running")
        if self._broken is not None:
            await trio.lowlevel.checkpoint()
            return CommandOutcome(exit_code=-1, message=f"sandbox broken: {self._broken}")
        timeout = self.config.command_timeout
        request = {
            "op": "run",
            "argv": [entry_point, *args],
            "env": self._env,
            "cwd": "/golem/work",
            "timeout": timeout,
            "limit": self.config.output_limit,
        }
        # The server enforces the time limit; this bound only catches a server that hangs.
        try:
            with trio.fail_after(timeout + 30):
                reply = await self._request(request)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._broken = self._broken or "the command server does not answer"
            message = f"sandbox failed: {self._broken}: {await self._log_tail()}"
            logger.warning("local runtime %s: %s (%r)", self.name, message, exc)
            return CommandOutcome(exit_code=-1, message=message)
        self._cpu += float(reply.get("cpu") or 0.0)
        stdout = base64.b64decode(reply.get("stdout") or "")
        stderr = base64.b64decode(reply.get("stderr") or "")
        exit_code = int(reply.get("exit_code", -1))
        notes: list[str] = []
        if reply.get("error"):
            notes.append(str(reply["error"]))
            stderr += str(reply["error"]).encode() + b"\n"
        if reply.get("timed_out"):
            notes.append(f"command killed: time limit of {timeout:g}s exceeded")
        limit = self.config.output_limit
        for stream in ("stdout", "stderr"):
            if reply.get(f"{stream}_truncated"):
                notes.append(f"{stream} truncated to {limit} bytes")
        if notes and exit_code != 0 and not reply.get("error") and not reply.get("timed_out"):
            notes.insert(0, f"ExeScript command exited with code {exit_code}")
        return CommandOutcome(stdout, stderr, exit_code, "; ".join(notes) or None)

    # --- transfer ---------------------------------------------------------------------------------

    @staticmethod
    def _container_path(golem: Path, path: str) -> Path:
        """The host path of sandbox path ``path``, which must lie inside ``/golem``."""
        if not path.startswith("/"):
            raise RuntimeFailure(f"{path!r}: not an absolute path in the sandbox")
        normal = posixpath.normpath(path)
        if (normal != "/golem" and not normal.startswith("/golem/")) or ".." in path.split("/"):
            raise RuntimeFailure(f"{path!r}: outside /golem, refused")
        relative = normal[len("/golem") :].lstrip("/")
        host = golem / relative
        real_golem = golem.resolve()
        parent = host.parent.resolve()
        if parent != real_golem and real_golem not in parent.parents:
            raise RuntimeFailure(f"{path!r}: leads outside /golem, refused")
        return host

    def _sandbox_file(self, url: str) -> Path:
        if url.startswith("container:"):
            path = url[len("container:") :]
        elif "://" in url or url.startswith(("http:", "https:", "gftp:", "file:")):
            raise RuntimeFailure(f"{url!r}: unsupported transfer URL here")
        else:
            path = url
        return self._container_path(self.golem, path)

    def container_file(self, url: str) -> Path:
        """The host path of the sandbox file ``url`` (``container:/golem/...`` or a bare
        ``/golem/...``), for an exe-unit that moves the file itself (gftp). Raises
        :class:`RuntimeFailure` for a path outside ``/golem`` or when the sandbox is not
        running."""
        if self._process is None or self._terminated:
            raise RuntimeFailure("the sandbox is not running")
        return self._sandbox_file(url)

    def _check_url(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RuntimeFailure(f"{url!r}: not an http(s) URL")
        if not self.config.allow_remote_transfers and not _is_loopback(parsed.hostname):
            raise RuntimeFailure(
                f"{url!r}: the local runtime only transfers from/to loopback hosts "
                "(set allow_remote_transfers to allow others)"
            )

    async def transfer(self, source: str, destination: str) -> CommandOutcome:
        """GET an ``http(s)`` source into the sandbox, or PUT a sandbox file to an ``http(s)``
        destination; refusals and failures raise :class:`RuntimeFailure`. Cancelled, a
        partial download may remain."""
        if self._process is None or self._terminated:
            await trio.lowlevel.checkpoint()
            raise RuntimeFailure("the sandbox is not running")
        expected: str | None = None
        verified = _VERIFIED_RE.match(source)
        if verified is not None:
            expected, source = verified.group(1).lower(), verified.group(2)
        download = source.startswith(("http://", "https://"))
        upload = destination.startswith(("http://", "https://"))
        if download == upload:
            await trio.lowlevel.checkpoint()
            raise RuntimeFailure(
                f"transfer {source!r} -> {destination!r}: exactly one side must be an "
                "http(s) URL in the local runtime"
            )
        url = source if download else destination
        self._check_url(url)
        path = self._sandbox_file(destination if download else source)
        try:
            with trio.fail_after(self.config.transfer_timeout):
                async with httpx2.AsyncClient(trust_env=False, follow_redirects=False) as client:
                    if download:
                        await self._download(client, url, path, expected)
                    else:
                        await self._upload(client, path, url)
        except trio.TooSlowError:
            raise RuntimeFailure(
                f"transfer {source!r} -> {destination!r}: time limit exceeded"
            ) from None
        except httpx2.HTTPError as exc:
            raise RuntimeFailure(f"transfer {source!r} -> {destination!r}: {exc}") from exc
        except OSError as exc:
            raise RuntimeFailure(f"transfer {source!r} -> {destination!r}: {exc}") from exc
        return CommandOutcome()

    async def _download(
        self, client: httpx2.AsyncClient, url: str, path: Path, expected: str | None
    ) -> None:
        """GET ``url`` into ``path``; with ``expected``, its sha3 hex digest (the length picks
        sha3-224/256/384/512) must match, else the file is removed."""
        digest = None
        if expected is not None:
            algorithm = _SHA3_BY_HEX_LENGTH.get(len(expected))
            if algorithm is None:
                raise RuntimeFailure(f"hash:sha3:{expected}: not a sha3 digest")
            digest = hashlib.new(algorithm)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        await trio.to_thread.run_sync(lambda: path.parent.mkdir(parents=True, exist_ok=True))
        async with client.stream("GET", url) as response:
            if response.status_code != 200:
                raise RuntimeFailure(f"GET {url}: HTTP {response.status_code}")
            fd = await trio.to_thread.run_sync(os.open, path, flags, 0o644)
            file = trio.wrap_file(os.fdopen(fd, "wb"))
            size = 0
            try:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.config.max_transfer_bytes:
                        raise RuntimeFailure(
                            f"GET {url}: larger than {self.config.max_transfer_bytes} bytes"
                        )
                    if digest is not None:
                        digest.update(chunk)
                    await file.write(chunk)
            finally:
                with trio.CancelScope(shield=True):
                    await file.aclose()
        if digest is not None and digest.hexdigest() != expected:
            await trio.to_thread.run_sync(path.unlink)
            raise RuntimeFailure(f"GET {url}: content does not match hash sha3:{expected}")

    async def _upload(self, client: httpx2.AsyncClient, path: Path, url: str) -> None:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = await trio.to_thread.run_sync(os.open, path, flags)
        file = trio.wrap_file(os.fdopen(fd, "rb"))
        try:
            size = os.fstat(fd).st_size
            if size > self.config.max_transfer_bytes:
                raise RuntimeFailure(f"{path.name}: larger than the transfer cap")
            headers = {"Content-Length": str(size)}
            response = await client.put(url, content=_FileBody(file), headers=headers)
        finally:
            with trio.CancelScope(shield=True):
                await file.aclose()
        if not 200 <= response.status_code < 300:
            raise RuntimeFailure(f"PUT {url}: HTTP {response.status_code}")

    # --- usage and terminate ----------------------------------------------------------------------

    async def usage(self) -> tuple[float, float]:
        """``(cpu_sec, duration_sec)``: CPU time of the finished commands (as the sandbox
        measured it), and time since ``deploy`` (frozen at ``terminate``)."""
        await trio.lowlevel.checkpoint()
        if self._deployed_at is None:
            return (self._cpu, 0.0)
        end = self._ended_at if self._ended_at is not None else trio.current_time()
        return (self._cpu, end - self._deployed_at)

    def vpn_endpoint(self, vpn_port: int) -> tuple[str, int] | None:
        """The host address the sandbox's service for ``vpn_port`` listens on, if any."""
        host_port = self.vpn_host_ports.get(vpn_port)
        return None if host_port is None else ("127.0.0.1", host_port)

    async def terminate(self) -> None:
        """End every process of the sandbox and remove its folder. Idempotent; runs to the end
        even when cancelled (bounded)."""
        if self._terminated:
            await trio.lowlevel.checkpoint()
            return
        self._terminated = True
        if self._deployed_at is not None:
            self._ended_at = trio.current_time()
        await self._teardown()

    async def _teardown(self) -> None:
        with trio.move_on_after(15, shield=True):
            await trio.lowlevel.checkpoint()
            process, self._process = self._process, None
            if process is not None:
                await self._kill(process)
            folder, self.folder = self.folder, None
            if folder is not None:
                await trio.to_thread.run_sync(
                    lambda: shutil.rmtree(folder, ignore_errors=True), abandon_on_cancel=True
                )
        await trio.lowlevel.checkpoint()

    async def _kill(self, process: trio.Process) -> None:
        # Killing the namespace's init (bwrap's child) kills every process in the namespace;
        # the outer bwrap exits only once it is gone, so its exit means all are.
        if self._child_pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self._child_pid, signal.SIGKILL)
        with trio.move_on_after(5):
            await process.wait()
        if process.returncode is None:
            # Last resort: the outer bwrap itself (the namespace ends with its init).
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                with trio.move_on_after(1):
                    await stream.aclose()


def local_runtime_factory(
    store: ImageStore,
    root: str | os.PathLike[str] | None = None,
    config: LocalRuntimeConfig | None = None,
    *,
    default_image: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Callable[[RuntimeContext], LocalRuntime]:
    """A :data:`~._runtime.RuntimeFactory` giving each activity a :class:`LocalRuntime` over
    the image its agreement's demand names in ``golem.srv.comp.task_package``.

    An image the store does not know fails at ``deploy``; with ``default_image`` (a folder) such
    an activity gets that folder as its ``/golem`` instead, and a warning names the image once.
    ``options`` are :class:`LocalRuntimeConfig` fields (with ``root`` or ``config``).
    """
    base = config or LocalRuntimeConfig()
    if root is not None:
        options["root"] = Path(root)
    settings = attrs.evolve(base, **options)
    fallback = Path(default_image).resolve() if default_image is not None else None
    warned: set[str] = set()

    def make(context: RuntimeContext) -> LocalRuntime:
        package = context.demand_properties.get(TASK_PACKAGE)
        image: Path | None = None
        problem: str | None = None
        if not isinstance(package, str):
            problem = f"the demand has no {TASK_PACKAGE}"
        else:
            try:
                image = store.image_for(package)
            except UnknownImage as exc:
                problem = str(exc)
        if image is None and fallback is not None:
            reason = problem or "no image"
            if reason not in warned:
                warned.add(reason)
                logger.warning("%s; its activities start from %s as /golem", reason, fallback)
            image, problem = fallback, None
        return LocalRuntime(image, settings, image_problem=problem, name=context.activity_id)

    return make
