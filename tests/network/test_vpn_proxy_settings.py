"""The proxies refuse settings they cannot use when they are made, naming the parameter."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from golem_trio import ConfigurationError, LocalHttpProxy, SocketProxy


class NoInstances:
    instances: tuple[Any, ...] = ()


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: SocketProxy(NoInstances(), 0), "remote_port"),
        (lambda: SocketProxy(NoInstances(), 70000), "remote_port"),
        (lambda: SocketProxy(NoInstances(), 22, -1), "port"),
        (lambda: SocketProxy(NoInstances(), 22, max_connections=0), "max_connections"),
        (lambda: SocketProxy(NoInstances(), 22, connect_timeout=-1), "connect_timeout"),
        (lambda: LocalHttpProxy(NoInstances(), remote_port=True), "remote_port"),
        (lambda: LocalHttpProxy(NoInstances(), response_timeout=0), "response_timeout"),
        (lambda: LocalHttpProxy(NoInstances(), request_timeout=float("inf")), "request_timeout"),
    ],
)
def test_bad_settings_are_refused(make: Any, parameter: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        make()
    assert refused.value.parameter == parameter


async def test_a_proxy_serves_a_free_port_and_answers_503_with_no_instance() -> None:
    async with LocalHttpProxy(NoInstances()) as proxy:
        assert proxy.port > 0
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        stream = await trio.open_tcp_stream("127.0.0.1", proxy.port)
        async with stream:
            await stream.send_all(b"not http at all\r\n\r\n")
            answer = b""
            while chunk := await stream.receive_some(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert proxy.stats.accepted == 2
    assert proxy.stats.unavailable == 1
