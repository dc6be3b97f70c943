"""The proxies and TCP streams into a VPN, carrying real bytes: services in bubblewrap sandboxes
(LocalNet's local runtime) listen on their VPN port, and the requestor reaches them through
LocalNet's TCP websocket. On the wall clock; needs bubblewrap."""

from __future__ import annotations

import shutil

import pytest
import trio
from _vpn_support import sandbox_stage

from golem_trio import LocalHttpProxy, Restart, RestartPolicy, Service, SocketProxy, vm
from golem_trio.market import Payload
from golem_trio.network import VpnConnectionError
from golem_trio.services import ProviderTerminated

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")

#: The image ``images/echo`` stands for.
ECHO_IMAGE = "a1f7625dabbfe6fb2a45306b49d1db442a55c6891e69d9f0f1c7fe8b"


class Echo(Service):
    """An echo server on the VPN's port 7 that greets with its name and provider."""

    def __init__(self, name: str = "echo") -> None:
        super().__init__()
        self.name = name

    @staticmethod
    async def get_payload() -> Payload | None:
        return await vm.repo(image_hash=ECHO_IMAGE, capabilities=[vm.VM_CAPS_VPN])

    async def start(self) -> None:
        script = self._ctx.new_script()
        script.deploy(**self.get_deploy_args())
        script.start()
        script.run(
            "/golem/run/echo_server.py", "--detach", "--name", f"{self.name}@{self.provider_name}"
        )
        await script


async def read_line(stream: trio.abc.ReceiveStream) -> str:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(1024)
        if not chunk:
            break
        data += chunk
    return data.decode()


async def echo_through(stream: trio.abc.Stream, payload: bytes) -> bytes:
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.send_all, payload)
        while len(received) < len(payload):
            chunk = await stream.receive_some(65536)
            assert chunk, "the connection ended early"
            received += chunk
    return bytes(received)


async def test_a_socket_proxy_carries_echo_sessions_through_a_termination() -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB, several websocket messages each way
    async with sandbox_stage(providers=4) as stage:
        network = await stage.golem.create_network("192.168.9.0/24")
        cluster = await stage.golem.run_service(
            Echo,
            instance_params=[{"name": "a"}, {"name": "b"}],
            network=network,
            restart=RestartPolicy(Restart.ON_FAILURE, backoff=0.5, jitter=0.0),
        )
        with trio.fail_after(120):
            await cluster.wait_running()
        async with SocketProxy(cluster, 7, max_connections=8) as proxy:
            assert proxy.port > 0

            async def session() -> tuple[trio.SocketStream, str]:
                stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
                return stream, (await read_line(stream)).strip()

            with trio.fail_after(60):
                first, greeting = await session()
                second, other = await session()
            names = {greeting, other}
            assert {n.split("@")[0] for n in names} == {"hello from a", "hello from b"}
            with trio.fail_after(60):
                assert await echo_through(first, payload) == payload
                assert await echo_through(second, b"x" * 10) == b"x" * 10

            # The provider of the first session's instance terminates: that session ends,
            # the other one goes on, and new sessions go to the survivor.
            victim = next(
                s for s in cluster.instances if greeting.endswith(f"{s.name}@{s.provider_name}")
            )
            survivor = next(s for s in cluster.instances if s is not victim)
            agreement = victim.instance.agreement
            assert agreement is not None
            stage.net.faults.terminate_agreement(agreement.agreement_id)
            with trio.fail_after(60):
                while True:
                    try:
                        if not await first.receive_some(1024):
                            break
                    except trio.BrokenResourceError:
                        break
                await first.aclose()
                assert await echo_through(second, b"still here") == b"still here"
            with trio.fail_after(60):
                while victim.is_running:  # noqa: ASYNC110 (polled: no event to wait on)
                    await trio.sleep(0.1)
                for _ in range(3):
                    stream, hello = await session()
                    assert hello == f"hello from {survivor.name}@{survivor.provider_name}"
                    await stream.aclose()
            # The replacement comes up elsewhere and takes connections again.
            with trio.fail_after(120):
                await cluster.wait_running()
            assert isinstance(victim.instance.stop_reasons[0], ProviderTerminated)
            replacement = f"hello from {victim.name}@{victim.provider_name}"
            assert replacement != greeting
            seen = set()
            with trio.fail_after(60):
                for _ in range(4):
                    stream, hello = await session()
                    seen.add(hello)
                    assert await echo_through(stream, b"ping") == b"ping"
                    await stream.aclose()
            assert replacement in seen
            assert f"hello from {survivor.name}@{survivor.provider_name}" in seen
            assert proxy.stats.carried >= 9
        # Closing the proxy closed the session still open through it.
        with trio.fail_after(10):
            try:
                ended = await second.receive_some(1024) == b""
            except trio.BrokenResourceError:
                ended = True
        assert ended
        await second.aclose()
        await cluster.stop()


async def test_streams_and_http_answers_without_a_service() -> None:
    async with sandbox_stage(providers=2) as stage:
        network = await stage.golem.create_network("192.168.10.0/24")
        cluster = await stage.golem.run_service(Echo, num_instances=1, network=network)
        empty = await stage.golem.run_service(Echo, num_instances=0, network=network)
        with trio.fail_after(120):
            await cluster.wait_running()
        (service,) = cluster.instances
        with trio.fail_after(30):
            stream = await service.open_tcp_stream(7)
            async with stream:
                assert (await read_line(stream)).startswith("hello from echo@")
                assert await echo_through(stream, b"direct") == b"direct"
            # Nothing listens on port 8 of the node: the daemon answers 504.
            with pytest.raises(VpnConnectionError) as refused:
                await service.open_tcp_stream(8)
            assert refused.value.status == 504
        async with (
            LocalHttpProxy(empty, 0) as none_running,
            LocalHttpProxy(cluster, 0, remote_port=8) as nobody_listening,
            LocalHttpProxy(cluster, 0, remote_port=7) as not_http,
        ):
            for proxy, status in ((none_running, 503), (nobody_listening, 502), (not_http, 502)):
                with trio.fail_after(30):
                    done = await trio.run_process(
                        [
                            "curl",
                            "-s",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                            "-m",
                            "20",
                            f"http://127.0.0.1:{proxy.port}/",
                        ],
                        capture_stdout=True,
                        check=False,
                    )
                assert done.stdout.decode() == str(status), (proxy, done)
        assert none_running.stats.unavailable == 1
        assert nobody_listening.stats.unreachable == 1
        await cluster.stop()
        await empty.stop()
