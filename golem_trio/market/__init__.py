"""``golem_trio.market``: what a demand asks for.

Payloads (:class:`VmPayload`, :class:`ManifestPayload`, :class:`CustomPayload`) give the demand
properties and constraint clauses; :mod:`golem_trio.market.vm` builds VM payloads as yapapi's
``vm.repo`` and ``vm.manifest`` do. Image URLs come from an :class:`ImageResolver`.
"""

from . import vm as vm
from ._payload import DEFAULT_REGISTRY_URL as DEFAULT_REGISTRY_URL
from ._payload import DEFAULT_STATIC_URL_TEMPLATE as DEFAULT_STATIC_URL_TEMPLATE
from ._payload import REGISTRY_URL_ENV as REGISTRY_URL_ENV
from ._payload import BadRegistryReply as BadRegistryReply
from ._payload import CustomPayload as CustomPayload
from ._payload import ImageNotFound as ImageNotFound
from ._payload import ImageResolver as ImageResolver
from ._payload import ManifestPayload as ManifestPayload
from ._payload import Payload as Payload
from ._payload import PayloadError as PayloadError
from ._payload import RegistryError as RegistryError
from ._payload import RegistryResolver as RegistryResolver
from ._payload import RegistryUnavailable as RegistryUnavailable
from ._payload import ResolvedImage as ResolvedImage
from ._payload import StaticResolver as StaticResolver
from ._payload import VmPayload as VmPayload
from ._payload import current_resolver as current_resolver
from ._payload import get_resolver as get_resolver
from ._payload import use_resolver as use_resolver

__all__ = [
    "DEFAULT_REGISTRY_URL",
    "DEFAULT_STATIC_URL_TEMPLATE",
    "REGISTRY_URL_ENV",
    "BadRegistryReply",
    "CustomPayload",
    "ImageNotFound",
    "ImageResolver",
    "ManifestPayload",
    "Payload",
    "PayloadError",
    "RegistryError",
    "RegistryResolver",
    "RegistryUnavailable",
    "ResolvedImage",
    "StaticResolver",
    "VmPayload",
    "current_resolver",
    "get_resolver",
    "use_resolver",
    "vm",
]

# Show public paths in tracebacks and docs, as trio does.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("golem_trio.market._"):
        _obj.__module__ = __name__
del _name, _obj
