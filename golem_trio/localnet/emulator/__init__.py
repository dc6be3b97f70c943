"""LocalNet's daemon emulator: the yagna daemon's REST API as an ASGI app, with its state.

- the core (``_core.py``, ``_clock.py``, ``_ids.py``, ``_events.py``, ``_http.py``): the
  :class:`Daemon` (identities and app keys, background tasks), :class:`DaemonError` (the
  daemon's error shapes), the :class:`NetClock` every timestamp comes from, seeded
  :class:`Ids`, event logs and queues with long polls, authentication and bodies;
- each API's state and routes: the market (``_market.py``, ``_market_routes.py``, with the
  constraint language of ``_constraints.py``), activities and their exe-unit model
  (``_activity.py``, ``_activity_routes.py``), payments (``_payment.py``,
  ``_payment_routes.py``) and the net (VPN) API (``_vpn.py``, ``_vpn_routes.py``), put
  together by :func:`build_app` (``_app.py``);
- faults (``_faults.py``): the :class:`FaultPlan`, the running :class:`Faults` handle that
  applies it to the daemon's answers (:class:`DaemonFaultMiddleware`), to activities (through
  :class:`CommandFaults`) and to providers (through the providers' ``ProviderFaults``), and
  ``/localnet/faults``;
- the ledger (``_ledger.py``): everything that happened, as JSON, and ``/localnet/ledger``.

The exe-unit model (:class:`ExeUnitState`, :data:`ALLOWED`, :data:`NEXT_STATE`,
:class:`Batch`, :class:`CommandResult`, :func:`execute_command`, :func:`command_result`) is
shared with the real daemon backend's exe-unit. This wing imports only the providers wing
(runtimes, and the provider model for type hints). See ``docs/localnet.md``.
"""

from golem_trio._exports import fixup_module_metadata

from ._activity import ALLOWED as ALLOWED
from ._activity import NEXT_STATE as NEXT_STATE
from ._activity import Activity as Activity
from ._activity import ActivityState as ActivityState
from ._activity import Batch as Batch
from ._activity import CommandFaults as CommandFaults
from ._activity import CommandResult as CommandResult
from ._activity import ExeUnitState as ExeUnitState
from ._activity import InjectedFault as InjectedFault
from ._activity import command_result as command_result
from ._activity import execute_command as execute_command
from ._activity import format_event_time as format_event_time
from ._activity_routes import StreamAborted as StreamAborted
from ._activity_routes import activity_routes as activity_routes
from ._app import EMULATED_VERSION as EMULATED_VERSION
from ._app import build_app as build_app
from ._clock import NetClock as NetClock
from ._core import Daemon as Daemon
from ._core import DaemonError as DaemonError
from ._core import NodeIdentity as NodeIdentity
from ._faults import DAEMON_KINDS as DAEMON_KINDS
from ._faults import DISHONEST_KINDS as DISHONEST_KINDS
from ._faults import FAULTS_PATH as FAULTS_PATH
from ._faults import PLANS as PLANS
from ._faults import DaemonFault as DaemonFault
from ._faults import DaemonFaultMiddleware as DaemonFaultMiddleware
from ._faults import FaultError as FaultError
from ._faults import FaultKind as FaultKind
from ._faults import FaultPlan as FaultPlan
from ._faults import Faults as Faults
from ._faults import FiredFault as FiredFault
from ._faults import ScheduledFault as ScheduledFault
from ._faults import fault_routes as fault_routes
from ._faults import load_plan as load_plan
from ._http import RequestCounter as RequestCounter
from ._ids import Ids as Ids
from ._ledger import LEDGER_PATH as LEDGER_PATH
from ._ledger import ledger as ledger
from ._ledger import ledger_routes as ledger_routes
from ._market import Agreement as Agreement
from ._market import AgreementState as AgreementState
from ._market import MarketState as MarketState
from ._market import format_time as format_time
from ._market_routes import market_routes as market_routes
from ._operations import operation_of as operation_of
from ._payment import PaymentState as PaymentState
from ._payment_routes import payment_routes as payment_routes
from ._vpn import VpnState as VpnState
from ._vpn_routes import vpn_routes as vpn_routes

__all__ = [
    "ALLOWED",
    "DAEMON_KINDS",
    "DISHONEST_KINDS",
    "EMULATED_VERSION",
    "FAULTS_PATH",
    "LEDGER_PATH",
    "NEXT_STATE",
    "PLANS",
    "Activity",
    "ActivityState",
    "Agreement",
    "AgreementState",
    "Batch",
    "CommandFaults",
    "CommandResult",
    "Daemon",
    "DaemonError",
    "DaemonFault",
    "DaemonFaultMiddleware",
    "ExeUnitState",
    "FaultError",
    "FaultKind",
    "FaultPlan",
    "Faults",
    "FiredFault",
    "Ids",
    "InjectedFault",
    "MarketState",
    "NetClock",
    "NodeIdentity",
    "PaymentState",
    "RequestCounter",
    "ScheduledFault",
    "StreamAborted",
    "VpnState",
    "activity_routes",
    "build_app",
    "command_result",
    "execute_command",
    "fault_routes",
    "format_event_time",
    "format_time",
    "ledger",
    "ledger_routes",
    "load_plan",
    "market_routes",
    "operation_of",
    "payment_routes",
    "vpn_routes",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
