"""The ``golem-trio`` command.

``golem-trio localnet`` serves a LocalNet (an emulated yagna daemon with emulated providers) on
loopback until SIGINT or SIGTERM; with ``--backend yagna`` the same simulated providers serve
real yagna daemons (PyPI ``golem-node``) started offline, with payments on a local chain: by
default two nodes, the requestor's and the providers', in a private network namespace (root
only; ``--nodes 1``: one daemon on loopback). Its only standard output is two lines to
``eval`` or copy::

    YAGNA_API_URL=http://127.0.0.1:7465
    YAGNA_APPKEY=...

Everything else (a summary, errors, logs) goes to standard error.

Its providers run commands for real: with bubblewrap installed they use the local runtime (each
activity a sandbox, image folders served by hash, see ``--images``); without it a scripted shell
that knows the commands apps usually start with. Standard error says which. A missing piece
(bubblewrap when ``--runtime local`` asks for it, golem-node, anvil, npm), a busy port or a
permission problem is one line on standard error and an exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import ipaddress
import logging
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import trio

from golem_trio.localnet import (
    ImageManifestError,
    ImageStore,
    ProviderPopulation,
    RuntimeFactory,
    discover_images,
    images_from_env,
    load_plan,
    local_runtime_factory,
    open_localnet,
    shell_runtime_factory,
    tune_gc_for_serving,
)

__all__ = ["main"]

PROG = "golem-trio"
#: Exit statuses: 0 stopped by a signal, 1 could not serve, 2 bad usage, 3 a piece LocalNet
#: needs is not installed.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3
#: How many yagna nodes ``--backend yagna`` runs unless ``--nodes`` says: two, the requestor's
#: and the providers' (they start about a second later than one daemon, and carry the exec
#: event stream and terminations as daemons on two machines do), where a network namespace
#: can be made; one otherwise (stderr says why).
DEFAULT_NODES = 2
#: How to get bubblewrap, the local runtime's sandbox.
BWRAP_HINT = "sudo apt-get install bubblewrap"


class _UsageError(Exception):
    """A command line LocalNet must refuse."""


class _Missing(Exception):
    """A piece LocalNet needs is not installed; the message says how to get it."""


class _CannotServe(Exception):
    """LocalNet could not start for a reason the user can act on; the message says which."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``golem-trio`` command with ``argv`` (default: ``sys.argv[1:]``); the exit
    status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse's own usage errors and --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "localnet":
        try:
            _check_localnet(args)
            _check_pieces(args)
        except _UsageError as exc:
            _error(f"{PROG} localnet: error: {exc}")
            return EXIT_USAGE
        except _Missing as exc:
            _error(f"{PROG} localnet: error: {exc}")
            return EXIT_MISSING
        except _CannotServe as exc:
            _error(f"{PROG} localnet: error: {exc}")
            return EXIT_FAILED
        return _localnet(args)
    if args.command == "bench":
        # The SDK loads only for this command: serving a LocalNet does not need it.
        from golem_trio.bench import bench_command

        return bench_command(
            args.scenarios,
            out=Path(args.out),
            seed=args.seed,
            clock=args.clock,
            plots=args.plots,
            live=args.live,
            against=args.against,
            backend=args.backend,
            nodes=args.nodes,
        )
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="The golem-trio requestor SDK.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    localnet = commands.add_parser(
        "localnet",
        help="serve a LocalNet: an emulated yagna daemon with emulated providers",
        description=(
            "Serve a LocalNet on loopback until SIGINT or SIGTERM. Standard output gets only "
            "the YAGNA_API_URL=... and YAGNA_APPKEY=... lines; the app key is the emulator's "
            "own throwaway key."
        ),
    )
    localnet.add_argument(
        "--host", default="127.0.0.1", help="loopback address to listen on (default: %(default)s)"
    )
    localnet.add_argument(
        "--port", type=int, default=7465, help="port (0: any free port; default: %(default)s)"
    )
    localnet.add_argument(
        "--providers",
        type=int,
        default=10,
        help="number of emulated providers (default: %(default)s)",
    )
    localnet.add_argument(
        "--seed", type=int, default=1, help="seed of ids and provider prices (default: %(default)s)"
    )
    localnet.add_argument(
        "--faults", metavar="NAME_OR_FILE", help="fault plan: a built-in name or a plan file"
    )
    localnet.add_argument(
        "--backend",
        choices=("emulator", "yagna"),
        default="emulator",
        help=(
            "emulator: LocalNet's own daemon emulator; yagna: a real yagna daemon (port of its "
            "own choosing) with payments on a local chain (default: %(default)s)"
        ),
    )
    localnet.add_argument(
        "--nodes",
        type=int,
        choices=(1, 2),
        default=None,
        help=(
            "yagna backend: 2, the requestor's and the providers' daemons as two nodes of a "
            "private network (needs root); 1, one daemon on loopback for both sides "
            "(default: 2 where a network namespace can be made, else 1)"
        ),
    )
    localnet.add_argument(
        "--runtime",
        choices=("auto", "local", "scripted"),
        default="auto",
        help=(
            "how providers run commands. local: for real, in a bubblewrap sandbox per "
            "activity; scripted: a scripted shell (sh -c, echo, sleep, date, cat, true); "
            "auto: local when bubblewrap is installed, else scripted (default: %(default)s)"
        ),
    )
    localnet.add_argument(
        "--images",
        nargs="+",
        action="extend",
        default=[],
        metavar="DIR",
        help=(
            "folders searched for image folders (a golem-image.json each), served by hash to "
            "the local runtime; also read from GOLEM_TRIO_IMAGES (os.pathsep-separated). "
            "Other images start from an empty /golem"
        ),
    )
    bench = commands.add_parser(
        "bench",
        help="run fault-injection scenarios on LocalNet and write their reports",
        description=(
            "Run each scenario file (TOML, see examples/bench/) on LocalNet and write "
            "report.json, report.md and plots into OUT/<scenario name>/; the Markdown summary "
            "goes to standard output."
        ),
    )
    bench.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario files")
    bench.add_argument(
        "--out",
        default="bench-results",
        metavar="DIR",
        help="where reports go (default: %(default)s)",
    )
    bench.add_argument("--seed", type=int, help="run under this seed instead of the file's")
    bench.add_argument(
        "--clock",
        choices=("virtual", "wall"),
        default=None,
        help=(
            "virtual: minutes of scenario in seconds; wall: in real time (default: virtual on "
            "localnet, wall on yagna)"
        ),
    )
    bench.add_argument(
        "--backend",
        choices=("localnet", "yagna"),
        default="localnet",
        help=(
            "localnet: the embedded emulator; yagna: LocalNet's providers on real yagna "
            "daemons, payments on a local chain (needs golem-trio[yagna] and anvil; wall "
            "clock) (default: %(default)s)"
        ),
    )
    bench.add_argument(
        "--nodes",
        type=int,
        choices=(1, 2),
        default=None,
        help=(
            "with --backend yagna: one daemon for all, or the requestor's and the providers' "
            "on two (needs root for a network namespace; default: two where possible)"
        ),
    )
    bench.add_argument(
        "--against",
        action="append",
        choices=("yapapi",),
        default=[],
        help=(
            "also run each scenario through yapapi (its own virtualenv, made on first use; "
            "on the wall clock) and report both side by side"
        ),
    )
    bench.add_argument("--no-plots", dest="plots", action="store_false", help="write no PNG plots")
    bench.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a live view while it runs (default: when standard output is a terminal)",
    )
    return parser


def _check_localnet(args: argparse.Namespace) -> None:
    args.plan = None
    if args.faults is not None:
        try:
            args.plan = load_plan(args.faults)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise _UsageError(f"--faults {args.faults}: {exc}") from None
    if not _is_loopback(args.host):
        raise _UsageError(
            f"--host {args.host}: LocalNet only listens on loopback (127.0.0.1, ::1, localhost)"
        )
    if not 0 <= args.port <= 65535:
        raise _UsageError(f"--port {args.port}: must be between 0 and 65535")
    if args.providers < 0:
        raise _UsageError(f"--providers {args.providers}: must not be negative")
    if args.backend == "yagna":
        if args.plan is not None:
            raise _UsageError("--faults: fault plans are for the emulator backend only")
        if args.providers < 1:
            raise _UsageError("--providers: the yagna backend needs at least one provider")
        if args.nodes is None:
            args.nodes, args.one_node_why = _default_nodes()
    elif args.nodes is not None:
        raise _UsageError("--nodes: nodes are for the yagna backend only")


def _check_pieces(args: argparse.Namespace) -> None:
    """Choose the runtime and find the images; for ``--backend yagna``, the daemon and the
    chain. :class:`_Missing` names the first piece that is not installed."""
    bwrap = shutil.which("bwrap")
    if args.runtime == "local" and bwrap is None:
        raise _Missing(
            f"--runtime local runs commands under bubblewrap (bwrap), which is not installed; "
            f"install it with: {BWRAP_HINT}, or use --runtime scripted"
        )
    args.chosen_runtime = args.runtime
    if args.runtime == "auto":
        args.chosen_runtime = "local" if bwrap is not None else "scripted"
    if args.images and args.chosen_runtime != "local":
        raise _UsageError("--images: image folders are for the local runtime only")
    args.image_store = ImageStore()
    args.image_infos = []
    if args.chosen_runtime == "local":
        try:
            args.image_infos = discover_images(args.image_store, args.images)
            args.image_infos += images_from_env(args.image_store)
        except PermissionError as exc:
            message = f"cannot read the image folder {exc.filename}: permission denied"
            raise _CannotServe(message) from None
        except (ImageManifestError, NotADirectoryError) as exc:
            raise _UsageError(f"--images: {exc}") from None
    if args.backend == "yagna":
        _check_yagna_pieces(args.nodes)


def _default_nodes() -> tuple[int, str | None]:
    """:data:`DEFAULT_NODES` where a network namespace can be made, else one and why (said
    on stderr once serving starts)."""
    from golem_trio.localnet.yagna import namespaces_problem

    problem = namespaces_problem()
    if DEFAULT_NODES == 1 or problem is None:
        return DEFAULT_NODES, None
    return 1, problem


def _check_yagna_pieces(nodes: int) -> None:
    from golem_trio.localnet.yagna import (
        ANVIL_ENV_VAR,
        INSTALL_HINT,
        AnvilNotInstalled,
        YagnaNotInstalled,
        anvil_install_command,
        find_anvil_binary,
        find_yagna_binary,
        namespaces_problem,
    )

    if importlib.util.find_spec("golem_node") is None:
        raise _Missing(f"--backend yagna: {INSTALL_HINT}")
    try:
        find_yagna_binary()
    except YagnaNotInstalled:
        raise _Missing(f"--backend yagna: {INSTALL_HINT}") from None
    try:
        find_anvil_binary()
    except AnvilNotInstalled as exc:
        if os.environ.get(ANVIL_ENV_VAR):
            raise _Missing(f"--backend yagna: {exc}") from None
        command = anvil_install_command()
        if shutil.which("npm") is None:
            raise _Missing(
                f"--backend yagna pays on a local chain, anvil, which is not installed, and "
                f"neither is npm, which installs it; install Node.js and npm (sudo apt-get "
                f"install nodejs npm), then run: {command}"
            ) from None
        raise _Missing(
            f"--backend yagna pays on a local chain, anvil, which is not installed; install it "
            f"with: {command} (or set {ANVIL_ENV_VAR} to an anvil executable)"
        ) from None
    if nodes == 2 and (problem := namespaces_problem()) is not None:
        raise _Missing(f"--backend yagna --nodes 2: {problem}; or use --nodes 1")


def _runtime(args: argparse.Namespace, empty_image: Path) -> RuntimeFactory:
    if args.chosen_runtime == "local":
        return local_runtime_factory(args.image_store, default_image=empty_image)
    return shell_runtime_factory()


def _describe_runtime(args: argparse.Namespace) -> str:
    if args.chosen_runtime == "local":
        images = ", ".join(f"{info.name} ({info.hashes[-1][:12]})" for info in args.image_infos)
        return (
            f"LocalNet: runtime local: commands run for real, in a bubblewrap sandbox per "
            f"activity; {len(args.image_infos)} image folder(s){': ' if images else ''}{images}"
        )
    why = "chosen with --runtime" if args.runtime == "scripted" else "bubblewrap is not installed"
    return (
        f"LocalNet: runtime scripted ({why}): a scripted shell answers sh -c, echo, sleep, date, "
        f"cat, true and false; for real commands, install bubblewrap: {BWRAP_HINT}"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def _error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _localnet(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.WARNING, stream=sys.stderr, format="LocalNet: %(levelname)s: %(message)s"
        )
    try:
        return trio.run(_serve, args)
    except KeyboardInterrupt:  # a SIGINT before the signal receiver was set up
        return EXIT_OK


def _announce(url: str, app_key: str, gsb_url: str | None = None) -> None:
    # The app key is printed here on purpose: handing it over is this command's job (it is
    # a throwaway key of this LocalNet). It goes nowhere else.
    sys.stdout.write(f"YAGNA_API_URL={shlex.quote(url)}\nYAGNA_APPKEY={shlex.quote(app_key)}\n")
    if gsb_url is not None:  # a real daemon: its service bus, for gftp transfers
        sys.stdout.write(f"GSB_URL={shlex.quote(gsb_url)}\n")
    sys.stdout.flush()


async def _serve_yagna(args: argparse.Namespace, runtime: RuntimeFactory) -> int:
    from golem_trio.localnet.yagna import (
        AnvilNotInstalled,
        LocalChainError,
        NamespacesUnavailable,
        YagnaNodeError,
        YagnaNotInstalled,
        open_yagna_localnet,
    )

    await trio.lowlevel.checkpoint()
    specs = ProviderPopulation(count=args.providers, seed=args.seed).specs()
    serving = False
    failure: str | None = None
    status = EXIT_FAILED
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with open_yagna_localnet(specs, runtime=runtime, nodes=args.nodes) as net:
                serving = True
                tune_gc_for_serving()
                _announce(net.url, net.app_key, net.gsb_url)
                where = (
                    f"a real yagna daemon at {net.url}"
                    if net.nodes == 1
                    else f"a real yagna daemon, the requestor's on a second one at {net.url} "
                    f"(two nodes in a private network)"
                )
                _error(
                    f"LocalNet: {args.providers} simulated provider(s) on {where}, payments on "
                    f"a local chain. Stop with Ctrl-C (SIGINT) or SIGTERM."
                )
                _error(_describe_runtime(args))
                if getattr(args, "one_node_why", None):
                    _error(f"LocalNet: one yagna node, not two: {args.one_node_why}.")
                async for signum in signals:
                    _error(f"LocalNet: {signal.Signals(signum).name} received, stopping.")
                    break
        except* (YagnaNotInstalled, AnvilNotInstalled) as group:
            if serving:
                raise
            failure = str(_first(group)).splitlines()[0]
        except* NamespacesUnavailable as group:
            if serving:
                raise
            failure = f"--nodes 2: {_one_line(_first(group))}; or use --nodes 1"
            status = EXIT_MISSING
        except* (YagnaNodeError, LocalChainError, OSError) as group:
            if serving:
                raise
            failure = f"the real daemon backend did not start: {_one_line(_first(group))}"
    if failure is not None:
        _error(f"{PROG} localnet: error: {failure}")
        return status
    _error("LocalNet: stopped.")
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""
    # Images LocalNet has no folder for start from this empty one.
    with tempfile.TemporaryDirectory(prefix="golem-trio-empty-image-") as empty:
        runtime = _runtime(args, Path(empty))
        if args.backend == "yagna":
            return await _serve_yagna(args, runtime)
        return await _serve_emulator(args, runtime)


async def _serve_emulator(args: argparse.Namespace, runtime: RuntimeFactory) -> int:
    await trio.lowlevel.checkpoint()
    serving = False
    bind_error: OSError | None = None
    # Signals that come while LocalNet starts wait in the receiver; it stops right after.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with open_localnet(
                ProviderPopulation(count=args.providers, seed=args.seed),
                seed=args.seed,
                faults=args.plan,
                runtime=runtime,
                serve=True,
                host=args.host.removeprefix("[").removesuffix("]"),
                port=args.port,
            ) as net:
                serving = True
                tune_gc_for_serving()
                _announce(str(net.url), net.app_key)
                _error(
                    f"LocalNet: {args.providers} emulated provider(s), seed {args.seed}, "
                    f"serving the daemon API at {net.url}. Stop with Ctrl-C (SIGINT) or SIGTERM."
                )
                _error(_describe_runtime(args))
                async for signum in signals:
                    _error(f"LocalNet: {signal.Signals(signum).name} received, stopping.")
                    break
        except* OSError as group:
            if serving:
                raise
            error = _first(group)
            assert isinstance(error, OSError)
            bind_error = error
    if bind_error is not None:
        _error(f"{PROG} localnet: error: {_bind_message(args, bind_error)}")
        return EXIT_FAILED
    _error("LocalNet: stopped.")
    return EXIT_OK


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] + ("..." if len(text) > 300 else "") if text else type(error).__name__


def _bind_message(args: argparse.Namespace, error: OSError) -> str:
    where = f"{args.host}:{args.port}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use (try another --port, or 0)"
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need root or "
            f"CAP_NET_BIND_SERVICE; try a port above 1023, or 0)"
        )
    return f"cannot listen on {where}: {error.strerror or error}"


if __name__ == "__main__":
    sys.exit(main())
