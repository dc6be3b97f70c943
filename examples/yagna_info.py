"""Print what a yagna daemon says about itself: identity, version, payment accounts, networks.

Usage (with a daemon running and its app key)::

    YAGNA_APPKEY=... python examples/yagna_info.py
"""

from __future__ import annotations

import sys

import trio

from golem_trio.yagna import ApiConfig, ConfigError, YagnaClient, YagnaError


async def main() -> int:
    try:
        config = ApiConfig.from_env()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    async with YagnaClient(config) as yagna:
        try:
            version = await yagna.identity.get_version()
            me = await yagna.identity.get_identity()
            accounts = await yagna.payment.get_requestor_accounts()
            networks = await yagna.net.get_networks()
        except YagnaError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"daemon   {config.api_url}  yagna {version.current.version}")
    print(f"identity {me.identity} ({me.name}, {me.role})")
    for account in accounts:
        modes = "/".join(
            m for m, on in (("send", account.send), ("receive", account.receive)) if on
        )
        print(f"account  {account.platform}  {account.address}  {modes}")
    print(f"networks {len(networks)}")
    return 0


if __name__ == "__main__":
    sys.exit(trio.run(main))
