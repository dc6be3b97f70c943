"""LocalNet: a local, fully offline Golem network (a daemon emulator and simulated providers)
for tests, demos and fault-injection benchmarks. See ``docs/localnet.md``.

This package imports nothing from the SDK's layers; it only speaks the daemon's REST API.
"""

from ._faults import PLANS as PLANS
from ._faults import DaemonFault as DaemonFault
from ._faults import FaultKind as FaultKind
from ._faults import FaultPlan as FaultPlan
from ._faults import Faults as Faults
from ._faults import ScheduledFault as ScheduledFault
from ._faults import load_plan as load_plan
from ._images import ImageInfo as ImageInfo
from ._images import ImageManifestError as ImageManifestError
from ._images import discover_images as discover_images
from ._images import images_from_env as images_from_env
from ._images import load_image_folder as load_image_folder
from ._ledger import ledger as ledger
from ._local_runtime import BubblewrapMissing as BubblewrapMissing
from ._local_runtime import ImageStore as ImageStore
from ._local_runtime import LocalRuntimeConfig as LocalRuntimeConfig
from ._local_runtime import local_runtime_factory as local_runtime_factory
from ._localnet import LocalNet as LocalNet
from ._localnet import ProviderPopulation as ProviderPopulation
from ._localnet import open_localnet as open_localnet
from ._provider import ProviderSpec as ProviderSpec
from ._runtime import Reply as Reply
from ._runtime import RuntimeContext as RuntimeContext
from ._runtime import RuntimeFactory as RuntimeFactory
from ._runtime import scripted_runtime_factory as scripted_runtime_factory
from ._shell import SHELL_COMMANDS as SHELL_COMMANDS
from ._shell import shell_runtime_factory as shell_runtime_factory

__all__ = [
    "PLANS",
    "SHELL_COMMANDS",
    "BubblewrapMissing",
    "DaemonFault",
    "FaultKind",
    "FaultPlan",
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
    "open_localnet",
    "scripted_runtime_factory",
    "shell_runtime_factory",
]
