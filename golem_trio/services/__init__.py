"""``golem_trio.services``: services, their instances' lifecycle, clusters, restarts, health.

See :class:`Service` for what to subclass, :class:`Cluster` for the handle ``run_service``
returns, :data:`TRANSITIONS` for the state machine and :mod:`._reasons` for why instances stop.
"""

from ._cluster import Cluster as Cluster
from ._cluster import ClusterClosed as ClusterClosed
from ._cluster import InstancesLost as InstancesLost
from ._cluster import Stopping as Stopping
from ._engine import Timeouts as Timeouts
from ._instance import ServiceInstance as ServiceInstance
from ._policy import HealthCheck as HealthCheck
from ._policy import Restart as Restart
from ._policy import RestartPolicy as RestartPolicy
from ._reasons import Aborted as Aborted
from ._reasons import ActivityDied as ActivityDied
from ._reasons import AgreementLost as AgreementLost
from ._reasons import BudgetExhausted as BudgetExhausted
from ._reasons import ClusterStopped as ClusterStopped
from ._reasons import Expired as Expired
from ._reasons import GolemExit as GolemExit
from ._reasons import HandlerFailed as HandlerFailed
from ._reasons import HealthCheckFailed as HealthCheckFailed
from ._reasons import Interrupted as Interrupted
from ._reasons import ProviderTerminated as ProviderTerminated
from ._reasons import ProvisioningFailed as ProvisioningFailed
from ._reasons import RunFinished as RunFinished
from ._reasons import StopReason as StopReason
from ._service import HandlerError as HandlerError
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
    "Cluster",
    "ClusterClosed",
    "ClusterStopped",
    "Expired",
    "GolemExit",
    "HandlerError",
    "HandlerFailed",
    "HealthCheck",
    "HealthCheckFailed",
    "IllegalTransition",
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
]

# Show public paths in tracebacks and docs, as trio does.
for _obj in list(globals().values()):
    if getattr(_obj, "__module__", "").startswith("golem_trio.services._"):
        _obj.__module__ = __name__
