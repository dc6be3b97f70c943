"""LocalNet: a local, fully offline Golem network (a daemon emulator and simulated providers)
for tests, demos and fault-injection benchmarks. See ``docs/localnet.md``.

The package has three wings and what ties them together:

- :mod:`golem_trio.localnet.emulator`: the daemon emulator (the REST API as an ASGI app, its
  state, faults and the ledger);
- :mod:`golem_trio.localnet.providers`: the provider model and the runtimes that run an
  activity's commands (scripted, the scripted shell, the local bubblewrap sandbox), and images;
- :mod:`golem_trio.localnet.yagna`: the same providers on a real yagna daemon
  (:func:`~golem_trio.localnet.yagna.open_yagna_localnet`), with payments on a local chain;
- here: :func:`open_localnet`, :class:`LocalNet` and :class:`ProviderPopulation`, and the
  names a user of the embedded network needs, re-exported from the wings; and
  :func:`open_fault_proxy` (``_proxy.py``), a fault-injecting proxy in front of any daemon's
  REST API (the emulator served on loopback, or the real daemon); and
  :func:`tune_gc_for_serving` (``_gc.py``), the garbage collector's settings for a process
  whose job is to serve LocalNet.

This package imports nothing from the SDK's layers (the real-daemon backend shares only the
service-bus client, :mod:`golem_trio.gsb`); it only speaks the daemon's REST API and bus.
"""

from golem_trio._exports import fixup_module_metadata

from ._gc import SERVING_GC_THRESHOLD as SERVING_GC_THRESHOLD
from ._gc import tune_gc_for_serving as tune_gc_for_serving
from ._localnet import LocalNet as LocalNet
from ._localnet import ProviderPopulation as ProviderPopulation
from ._localnet import open_localnet as open_localnet
from ._proxy import PROXY_FAULT_KINDS as PROXY_FAULT_KINDS
from ._proxy import FaultProxy as FaultProxy
from ._proxy import open_fault_proxy as open_fault_proxy
from .emulator import PLANS as PLANS
from .emulator import DaemonFault as DaemonFault
from .emulator import FaultKind as FaultKind
from .emulator import FaultPlan as FaultPlan
from .emulator import Faults as Faults
from .emulator import ScheduledFault as ScheduledFault
from .emulator import ledger as ledger
from .emulator import load_plan as load_plan
from .providers import SHELL_COMMANDS as SHELL_COMMANDS
from .providers import BubblewrapMissing as BubblewrapMissing
from .providers import ImageInfo as ImageInfo
from .providers import ImageManifestError as ImageManifestError
from .providers import ImageStore as ImageStore
from .providers import LocalRuntimeConfig as LocalRuntimeConfig
from .providers import ProviderSpec as ProviderSpec
from .providers import Reply as Reply
from .providers import RuntimeContext as RuntimeContext
from .providers import RuntimeFactory as RuntimeFactory
from .providers import discover_images as discover_images
from .providers import images_from_env as images_from_env
from .providers import load_image_folder as load_image_folder
from .providers import local_runtime_factory as local_runtime_factory
from .providers import scripted_runtime_factory as scripted_runtime_factory
from .providers import shell_runtime_factory as shell_runtime_factory

__all__ = [
    "PLANS",
    "PROXY_FAULT_KINDS",
    "SERVING_GC_THRESHOLD",
    "SHELL_COMMANDS",
    "BubblewrapMissing",
    "DaemonFault",
    "FaultKind",
    "FaultPlan",
    "FaultProxy",
    "Faults",
    "ImageInfo",
    "ImageManifestError",
    "ImageStore",
    "LocalNet",
    "LocalRuntimeConfig",
    "ProviderPopulation",
    "ProviderSpec",
    "Reply",
    "RuntimeContext",
    "RuntimeFactory",
    "ScheduledFault",
    "discover_images",
    "images_from_env",
    "ledger",
    "load_image_folder",
    "load_plan",
    "local_runtime_factory",
    "open_fault_proxy",
    "open_localnet",
    "scripted_runtime_factory",
    "shell_runtime_factory",
    "tune_gc_for_serving",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
