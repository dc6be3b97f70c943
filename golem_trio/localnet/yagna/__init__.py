"""LocalNet on the real yagna daemon: LocalNet's providers serving a real ``yagna`` (PyPI
``golem-node``) started offline on loopback, with payments on a local chain.

- :func:`open_yagna_localnet` (``_backend.py``) starts it all and gives a
  :class:`YagnaLocalNet` (the daemon's URL and the requestor's app key);
- :class:`YagnaNode` (``_node.py``) runs the daemon: :func:`find_yagna_binary` finds it, and
  :class:`YagnaNotInstalled` (with :data:`INSTALL_HINT`) says how to install it;
- :class:`LocalChain` (``_chain.py``) runs anvil with the test token (``contracts/``):
  :func:`find_anvil_binary`, :class:`AnvilNotInstalled`, :func:`anvil_install_command`,
  :func:`anvil_install_hint`, :data:`ANVIL_ENV_VAR`, :data:`ANVIL_VERSION`;
- each provider's :class:`~golem_trio.localnet.providers.ProviderAgent` drives the daemon's
  provider REST API through :class:`RestProviderPort` (``_rest_port.py``), and an
  :class:`ExeUnit` (``_exeunit.py``) per activity answers on the daemon's service bus
  (through :mod:`golem_trio.gsb`, the bus client it shares with the SDK);
- ``_process.py`` starts the daemon and anvil in process groups of their own and stops them
  by process group, even on failure or at interpreter exit;
- with two nodes (``open_yagna_localnet(..., nodes=2)``), the requestor's and the providers'
  daemons meet on a central net with a hub, all in a private network namespace
  (:class:`PrivateNetwork`, ``_netns.py``); where one cannot be made,
  :class:`NamespacesUnavailable` (:func:`namespaces_problem` says why beforehand);
- :class:`YagnaFaults` (``_faults.py``, at ``net.faults``): faults fired by hand (a provider
  terminating, an exe-unit dying, providers cheating, daemon faults through a
  :class:`~golem_trio.localnet.FaultProxy`), and :func:`yagna_ledger`, the network's ledger
  as the requestor's daemon holds it.

This wing imports the providers wing and the emulator's exe-unit model. See
``docs/localnet.md`` (*The real daemon backend*).
"""

from golem_trio._exports import fixup_module_metadata

from ._backend import NODE_COUNTS as NODE_COUNTS
from ._backend import ActivityHost as ActivityHost
from ._backend import YagnaLocalNet as YagnaLocalNet
from ._backend import open_yagna_localnet as open_yagna_localnet
from ._chain import ANVIL_ENV_VAR as ANVIL_ENV_VAR
from ._chain import ANVIL_NPM_PACKAGE as ANVIL_NPM_PACKAGE
from ._chain import ANVIL_VERSION as ANVIL_VERSION
from ._chain import LOCAL_CHAIN_ID as LOCAL_CHAIN_ID
from ._chain import TOKEN_DECIMALS as TOKEN_DECIMALS
from ._chain import AnvilNotInstalled as AnvilNotInstalled
from ._chain import LocalChain as LocalChain
from ._chain import LocalChainError as LocalChainError
from ._chain import TokenArtifact as TokenArtifact
from ._chain import anvil_install_command as anvil_install_command
from ._chain import anvil_install_hint as anvil_install_hint
from ._chain import anvil_user_prefix as anvil_user_prefix
from ._chain import find_anvil_binary as find_anvil_binary
from ._chain import from_base_units as from_base_units
from ._chain import load_token_artifact as load_token_artifact
from ._chain import to_base_units as to_base_units
from ._exeunit import ExeUnit as ExeUnit
from ._exeunit import exeunit_service_id as exeunit_service_id
from ._faults import YagnaFaults as YagnaFaults
from ._faults import yagna_ledger as yagna_ledger
from ._netns import NAMESPACE_HINT as NAMESPACE_HINT
from ._netns import NamespacesUnavailable as NamespacesUnavailable
from ._netns import PrivateNetwork as PrivateNetwork
from ._netns import namespaces_problem as namespaces_problem
from ._node import HUB_ADDRESS as HUB_ADDRESS
from ._node import INSTALL_HINT as INSTALL_HINT
from ._node import PAYMENT_NETWORK as PAYMENT_NETWORK
from ._node import PAYMENT_PLATFORM as PAYMENT_PLATFORM
from ._node import YAGNA_VERSION as YAGNA_VERSION
from ._node import NodeIdentity as NodeIdentity
from ._node import YagnaNode as YagnaNode
from ._node import YagnaNodeError as YagnaNodeError
from ._node import YagnaNotInstalled as YagnaNotInstalled
from ._node import find_yagna_binary as find_yagna_binary
from ._rest_port import DaemonBadRequest as DaemonBadRequest
from ._rest_port import DaemonConflict as DaemonConflict
from ._rest_port import DaemonGone as DaemonGone
from ._rest_port import DaemonNotFound as DaemonNotFound
from ._rest_port import DaemonRefused as DaemonRefused
from ._rest_port import DaemonServerError as DaemonServerError
from ._rest_port import DaemonTimeout as DaemonTimeout
from ._rest_port import DaemonUnauthorized as DaemonUnauthorized
from ._rest_port import DaemonUnreachable as DaemonUnreachable
from ._rest_port import RestPortError as RestPortError
from ._rest_port import RestProviderPort as RestProviderPort
from ._rest_port import SentDocument as SentDocument
from ._rest_port import provider_client as provider_client

__all__ = [
    "ANVIL_ENV_VAR",
    "ANVIL_NPM_PACKAGE",
    "ANVIL_VERSION",
    "HUB_ADDRESS",
    "INSTALL_HINT",
    "LOCAL_CHAIN_ID",
    "NAMESPACE_HINT",
    "NODE_COUNTS",
    "PAYMENT_NETWORK",
    "PAYMENT_PLATFORM",
    "TOKEN_DECIMALS",
    "YAGNA_VERSION",
    "ActivityHost",
    "AnvilNotInstalled",
    "DaemonBadRequest",
    "DaemonConflict",
    "DaemonGone",
    "DaemonNotFound",
    "DaemonRefused",
    "DaemonServerError",
    "DaemonTimeout",
    "DaemonUnauthorized",
    "DaemonUnreachable",
    "ExeUnit",
    "LocalChain",
    "LocalChainError",
    "NamespacesUnavailable",
    "NodeIdentity",
    "PrivateNetwork",
    "RestPortError",
    "RestProviderPort",
    "SentDocument",
    "TokenArtifact",
    "YagnaFaults",
    "YagnaLocalNet",
    "YagnaNode",
    "YagnaNodeError",
    "YagnaNotInstalled",
    "anvil_install_command",
    "anvil_install_hint",
    "anvil_user_prefix",
    "exeunit_service_id",
    "find_anvil_binary",
    "find_yagna_binary",
    "from_base_units",
    "load_token_artifact",
    "namespaces_problem",
    "open_yagna_localnet",
    "provider_client",
    "to_base_units",
    "yagna_ledger",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
