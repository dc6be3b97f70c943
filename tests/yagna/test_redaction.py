"""No error built from a daemon's reply carries a secret: the client's app key (also cut off by
a snippet's length) and any ``Bearer`` token are blanked out of every message."""

from __future__ import annotations

import random

import httpx2
import pytest

from golem_trio.yagna import (
    ApiConfig,
    BadRequest,
    DecodeError,
    RetryPolicy,
    ServerError,
    YagnaClient,
)

#: As the daemon makes them: 32 hex digits.
APP_KEY = "5f0c8e1d9a7b4c3e2f1a0b9c8d7e6f5a"
OTHER_TOKEN = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.dG9rZW4"


def client(reply: httpx2.Response) -> YagnaClient:
    config = ApiConfig(app_key=APP_KEY, retry=RetryPolicy(max_attempts=1))
    return YagnaClient(
        config, transport=httpx2.MockTransport(lambda request: reply), rng=random.Random(1)
    )


def assert_clean(error: BaseException) -> None:
    text = f"{error} {error!r} {getattr(error, 'detail', '')} {getattr(error, 'message', '')}"
    for secret in (APP_KEY, OTHER_TOKEN):
        # Neither whole nor any stretch of 8 characters of it.
        assert all(secret[i : i + 8] not in text for i in range(len(secret) - 7)), text


@pytest.mark.parametrize(
    "body",
    [
        # A proxy echoing the request's headers instead of the daemon's JSON.
        f"Authorization: Bearer {APP_KEY}\nAccept: application/json\n",
        # The key alone, and cut off by the snippet's 80 characters.
        "x" * 60 + f" key={APP_KEY}",
        f"<html>authorization: bearer {OTHER_TOKEN}</html>",
    ],
)
async def test_a_reply_that_is_not_json_does_not_leak_the_key(body: str) -> None:
    reply = httpx2.Response(200, text=body, headers={"Content-Type": "text/plain"})
    async with client(reply) as yagna:
        with pytest.raises(DecodeError) as caught:
            await yagna.market.get_demands()
    assert "reply is not JSON" in str(caught.value)
    assert_clean(caught.value)
    assert "***" in str(caught.value)


async def test_a_malformed_model_does_not_leak_the_key() -> None:
    reply = httpx2.Response(200, json=[{"demandId": APP_KEY, "properties": APP_KEY}])
    async with client(reply) as yagna:
        with pytest.raises(DecodeError) as caught:
            await yagna.market.get_demands()
    assert_clean(caught.value)


@pytest.mark.parametrize("status", [400, 500])
async def test_an_error_reply_echoing_a_bearer_token_is_redacted(status: int) -> None:
    reply = httpx2.Response(
        status, json={"message": f"refused Authorization: Bearer {OTHER_TOKEN} for {APP_KEY}"}
    )
    async with client(reply) as yagna:
        with pytest.raises(BadRequest if status == 400 else ServerError) as caught:
            await yagna.market.get_demands()
    assert_clean(caught.value)
    assert caught.value.message is not None
    assert "Bearer ***" in caught.value.message


async def test_errors_made_anywhere_after_the_client_know_its_key() -> None:
    async with client(httpx2.Response(200, json=[])) as yagna:
        assert await yagna.market.get_demands() == []
        # (The exec stream and the JSON mapping build their errors themselves.)
        error = DecodeError("getExecBatchResults", f"event data is not JSON: '{APP_KEY}'")
    assert_clean(error)
