"""The ``golem-trio`` command.

``golem-trio localnet`` serves a LocalNet (an emulated yagna daemon with emulated providers) on
loopback until SIGINT or SIGTERM; with ``--backend yagna`` the same simulated providers serve
a real yagna daemon (PyPI ``golem-node``) started offline, with payments on a local chain. Its
only standard output is two lines to ``eval`` or copy::

    YAGNA_API_URL=http://127.0.0.1:7465
    YAGNA_APPKEY=...

Everything else (a summary, errors, logs) goes to standard error.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import shlex
import signal
import sys
from collections.abc import Sequence

import trio

from golem_trio.localnet import ProviderPopulation, load_plan, open_localnet

__all__ = ["main"]

PROG = "golem-trio"
#: Exit statuses: 0 stopped by a signal, 1 could not serve, 2 bad usage.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    """A command line LocalNet must refuse."""


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
        except _UsageError as exc:
            _error(f"{PROG} localnet: error: {exc}")
            return EXIT_USAGE
        return _localnet(args)
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
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        return trio.run(_serve, args)
    except KeyboardInterrupt:  # a SIGINT before the signal receiver was set up
        return EXIT_OK


def _announce(url: str, app_key: str) -> None:
    # The app key is printed here on purpose: handing it over is this command's job (it is
    # a throwaway key of this LocalNet). It goes nowhere else.
    sys.stdout.write(f"YAGNA_API_URL={shlex.quote(url)}\nYAGNA_APPKEY={shlex.quote(app_key)}\n")
    sys.stdout.flush()


async def _serve_yagna(args: argparse.Namespace) -> int:
    from golem_trio.localnet._yagna_backend import open_yagna_localnet

    specs = ProviderPopulation(count=args.providers, seed=args.seed).specs()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_yagna_localnet(specs) as net:
            _announce(net.url, net.app_key)
            _error(
                f"LocalNet: {args.providers} simulated provider(s) on a real yagna daemon at "
                f"{net.url}, payments on a local chain. Stop with Ctrl-C (SIGINT) or SIGTERM."
            )
            async for signum in signals:
                _error(f"LocalNet: {signal.Signals(signum).name} received, stopping.")
                break
    _error("LocalNet: stopped.")
    return EXIT_OK


async def _serve(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; the exit status."""
    await trio.lowlevel.checkpoint()
    if args.backend == "yagna":
        return await _serve_yagna(args)
    serving = False
    bind_error: OSError | None = None
    # Signals that come while LocalNet starts wait in the receiver; it stops right after.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with open_localnet(
                ProviderPopulation(count=args.providers, seed=args.seed),
                seed=args.seed,
                faults=args.plan,
                serve=True,
                host=args.host.removeprefix("[").removesuffix("]"),
                port=args.port,
            ) as net:
                serving = True
                _announce(str(net.url), net.app_key)
                _error(
                    f"LocalNet: {args.providers} emulated provider(s), seed {args.seed}, "
                    f"serving the daemon API at {net.url}. Stop with Ctrl-C (SIGINT) or SIGTERM."
                )
                async for signum in signals:
                    _error(f"LocalNet: {signal.Signals(signum).name} received, stopping.")
                    break
        except* OSError as group:
            if serving:
                raise
            bind_error = _first_os_error(group)
    if bind_error is not None:
        _error(f"{PROG} localnet: error: {_bind_message(args, bind_error)}")
        return EXIT_FAILED
    _error("LocalNet: stopped.")
    return EXIT_OK


def _first_os_error(group: BaseExceptionGroup[OSError]) -> OSError:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, OSError)
    return error


def _bind_message(args: argparse.Namespace, error: OSError) -> str:
    where = f"{args.host}:{args.port}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is in use (try another --port, or 0)"
    return f"cannot listen on {where}: {error.strerror or error}"


if __name__ == "__main__":
    sys.exit(main())
