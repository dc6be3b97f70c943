"""``golem_trio.services``: services, their instances' lifecycle, clusters, restarts, health.

See :class:`Service` for what to subclass, :class:`Cluster` for the handle ``run_service``
returns, :data:`TRANSITIONS` for the state machine and :mod:`._reasons` for why instances stop.
:func:`open_engine` runs the layer on a daemon client and a payment processor (``Golem`` uses
it); :class:`Timeouts` holds its time bounds.

Inside, modules import one another in one direction only: ``_reasons`` and ``_state`` at the
bottom, then ``_service`` (with the :class:`InstanceRecord` and :class:`ClusterView` protocols
a service object reads), ``_policy``, ``_watcher``, ``_context`` (what an engine's parts share),
``_link`` (what an instance may ask of its cluster), ``_instance``, ``_cluster`` and, at the
top, ``_engine``.
"""

from golem_trio._exports import fixup_module_metadata

from ._cluster import BudgetTooSmall as BudgetTooSmall
from ._cluster import Cluster as Cluster
from ._cluster import ClusterClosed as ClusterClosed
from ._cluster import InstancesLost as InstancesLost
from ._cluster import Stopping as Stopping
from ._context import EngineContext as EngineContext
from ._context import Timeouts as Timeouts
from ._engine import Engine as Engine
from ._engine import open_engine as open_engine
from ._instance import ServiceInstance as ServiceInstance
from ._policy import HealthCheck as HealthCheck
from ._policy import Restart as Restart
from ._policy import RestartPolicy as RestartPolicy
from ._reasons import Aborted as Aborted
from ._reasons import ActivityDied as ActivityDied
from ._reasons import AgreementLost as AgreementLost
from ._reasons import BudgetExhausted as BudgetExhausted
from ._reasons import ClusterStopped as ClusterStopped
from ._reasons import DaemonLost as DaemonLost
from ._reasons import Expired as Expired
from ._reasons import GolemExit as GolemExit
from ._reasons import HandlerFailed as HandlerFailed
from ._reasons import HealthCheckFailed as HealthCheckFailed
from ._reasons import Interrupted as Interrupted
from ._reasons import ProviderTerminated as ProviderTerminated
from ._reasons import ProvisioningFailed as ProvisioningFailed
from ._reasons import RunFinished as RunFinished
from ._reasons import StopReason as StopReason
from ._service import ClusterView as ClusterView
from ._service import HandlerError as HandlerError
from ._service import InstanceRecord as InstanceRecord
from ._service import Service as Service
from ._service import ServiceDefinitionError as ServiceDefinitionError
from ._service import check_service_class as check_service_class
from ._state import TRANSITIONS as TRANSITIONS
from ._state import IllegalTransition as IllegalTransition
from ._state import ServiceState as ServiceState
from ._state import StateChange as StateChange
from ._state import StateMachine as StateMachine
from ._state import Trigger as Trigger

__all__ = [
    "TRANSITIONS",
    "Aborted",
    "ActivityDied",
    "AgreementLost",
    "BudgetExhausted",
    "BudgetTooSmall",
    "Cluster",
    "ClusterClosed",
    "ClusterStopped",
    "ClusterView",
    "DaemonLost",
    "Engine",
    "EngineContext",
    "Expired",
    "GolemExit",
    "HandlerError",
    "HandlerFailed",
    "HealthCheck",
    "HealthCheckFailed",
    "IllegalTransition",
    "InstanceRecord",
    "InstancesLost",
    "Interrupted",
    "ProviderTerminated",
    "ProvisioningFailed",
    "Restart",
    "RestartPolicy",
    "RunFinished",
    "Service",
    "ServiceDefinitionError",
    "ServiceInstance",
    "ServiceState",
    "StateChange",
    "StateMachine",
    "StopReason",
    "Stopping",
    "Timeouts",
    "Trigger",
    "check_service_class",
    "open_engine",
]


fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
