"""golem-trio: a requestor SDK for the Golem network, built on Trio structured concurrency.

Start with :class:`Golem` and :class:`Service`; payloads come from :mod:`golem_trio.market`
(``from golem_trio.market import vm``). The layers below are public packages of their own:
:mod:`golem_trio.yagna` (the daemon's REST API), :mod:`golem_trio.terms` (agreement terms,
for the market and payment alike), :mod:`golem_trio.market`, :mod:`golem_trio.payment`,
:mod:`golem_trio.work`, :mod:`golem_trio.network` (VPN networks and local proxies),
:mod:`golem_trio.services`, :mod:`golem_trio.events` and
:mod:`golem_trio.localnet` (the embedded Golem network).
"""

from golem_trio._exports import fixup_module_metadata

from . import events as events
from ._errors import ConfigurationError as ConfigurationError
from ._errors import ConfigurationTypeError as ConfigurationTypeError
from ._errors import GolemError as GolemError
from ._log import enable_default_logger as enable_default_logger
from ._log import log_event as log_event
from ._log import log_event_repr as log_event_repr
from ._log import log_summary as log_summary
from .golem import Golem as Golem
from .golem import payment_platform as payment_platform
from .market import vm as vm
from .network import LocalHttpProxy as LocalHttpProxy
from .network import Network as Network
from .network import SocketProxy as SocketProxy
from .services import Cluster as Cluster
from .services import HealthCheck as HealthCheck
from .services import Restart as Restart
from .services import RestartPolicy as RestartPolicy
from .services import Service as Service
from .services import ServiceState as ServiceState
from .services import StopReason as StopReason
from .services import Timeouts as Timeouts
from .work import BatchError as BatchError
from .work import BatchTimeoutError as BatchTimeoutError
from .work import CommandExecutionError as CommandExecutionError
from .work import Result as Result
from .work import Script as Script
from .work import WorkContext as WorkContext

__version__ = "0.1.0"

__all__ = [
    "BatchError",
    "BatchTimeoutError",
    "Cluster",
    "CommandExecutionError",
    "ConfigurationError",
    "ConfigurationTypeError",
    "Golem",
    "GolemError",
    "HealthCheck",
    "LocalHttpProxy",
    "Network",
    "Restart",
    "RestartPolicy",
    "Result",
    "Script",
    "Service",
    "ServiceState",
    "SocketProxy",
    "StopReason",
    "Timeouts",
    "WorkContext",
    "enable_default_logger",
    "events",
    "log_event",
    "log_event_repr",
    "log_summary",
    "payment_platform",
    "vm",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
