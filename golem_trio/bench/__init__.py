"""``golem_trio.bench``: fault-injection benchmarks.

A scenario (a TOML file, :func:`load_scenario`) names a service, a provider population, a
budget and faults on a time axis; :func:`run_scenario` runs it on LocalNet, in virtual time or
on the wall clock (:func:`run_yagna_scenario`: on real yagna daemons), and gives the figures
(availability, recovery latency, restarts, money, leaks, the invariants of
``golem_trio.testing``); :class:`BenchReport` and
:func:`write_report` turn them into JSON, Markdown and plots. ``golem-trio bench`` is the
command line (``docs/bench.md``).
"""

from golem_trio._exports import fixup_module_metadata

from ._command import bench_command as bench_command
from ._report import PLOTS as PLOTS
from ._report import BenchReport as BenchReport
from ._report import MissingExtra as MissingExtra
from ._report import write_report as write_report
from ._runner import CLOCKS as CLOCKS
from ._runner import Column as Column
from ._runner import Recorder as Recorder
from ._runner import run_column as run_column
from ._runner import run_scenario as run_scenario
from ._scenario import FaultSpec as FaultSpec
from ._scenario import FaultType as FaultType
from ._scenario import PopulationSpec as PopulationSpec
from ._scenario import Scenario as Scenario
from ._scenario import ScenarioError as ScenarioError
from ._scenario import ServiceSpec as ServiceSpec
from ._scenario import load_scenario as load_scenario
from ._scenario import parse_scenario as parse_scenario
from ._services import EchoService as EchoService
from ._services import IdleService as IdleService
from ._yagna import BACKENDS as BACKENDS
from ._yagna import run_yagna_column as run_yagna_column
from ._yagna import run_yagna_scenario as run_yagna_scenario
from ._yapapi import YAPAPI_VERSION as YAPAPI_VERSION
from ._yapapi import YapapiUnavailable as YapapiUnavailable
from ._yapapi import run_yapapi_column as run_yapapi_column
from ._yapapi import yapapi_venv as yapapi_venv

__all__ = [
    "BACKENDS",
    "CLOCKS",
    "PLOTS",
    "YAPAPI_VERSION",
    "BenchReport",
    "Column",
    "EchoService",
    "FaultSpec",
    "FaultType",
    "IdleService",
    "MissingExtra",
    "PopulationSpec",
    "Recorder",
    "Scenario",
    "ScenarioError",
    "ServiceSpec",
    "YapapiUnavailable",
    "bench_command",
    "load_scenario",
    "parse_scenario",
    "run_column",
    "run_scenario",
    "run_yagna_column",
    "run_yagna_scenario",
    "run_yapapi_column",
    "write_report",
    "yapapi_venv",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
