"""LocalNet's providers: the provider model and the runtimes that run an activity's commands.

- the provider model (``_model.py``): a :class:`ProviderSpec` says what a provider offers and
  accepts; :class:`ProviderAgent` publishes its offer, negotiates, approves, bills and
  invoices through a :class:`ProviderPort` (the provider side of a daemon: the emulator's, or a
  real daemon's provider REST API). Faults reach it through :class:`ProviderFaults`;
- runtimes, one per activity, made by a :data:`RuntimeFactory`: scripted
  (``_runtime.py``: :func:`scripted_runtime_factory`), the scripted shell (``_shell.py``:
  :func:`shell_runtime_factory`) and the local bubblewrap sandbox (``_local_runtime.py``:
  :func:`local_runtime_factory`, with its command server ``_sandbox_server.py``);
- images for the local runtime (``_images.py``): an :class:`ImageStore` of folders addressed
  by hash, and the ``golem-image.json`` manifests that :func:`discover_images` reads.

This wing imports nothing from the rest of LocalNet. See ``docs/localnet.md``.
"""

from golem_trio._exports import fixup_module_metadata

from ._images import MANIFEST_NAME as MANIFEST_NAME
from ._images import ImageInfo as ImageInfo
from ._images import ImageManifestError as ImageManifestError
from ._images import discover_images as discover_images
from ._images import images_from_env as images_from_env
from ._images import load_image_folder as load_image_folder
from ._local_runtime import BubblewrapMissing as BubblewrapMissing
from ._local_runtime import ImageStore as ImageStore
from ._local_runtime import LocalRuntime as LocalRuntime
from ._local_runtime import LocalRuntimeConfig as LocalRuntimeConfig
from ._local_runtime import UnknownImage as UnknownImage
from ._local_runtime import image_hash as image_hash
from ._local_runtime import local_runtime_factory as local_runtime_factory
from ._model import ACCEPT_TIMEOUT as ACCEPT_TIMEOUT
from ._model import DEBIT_NOTE_INTERVAL as DEBIT_NOTE_INTERVAL
from ._model import PAYMENT_TIMEOUT as PAYMENT_TIMEOUT
from ._model import AgreementLife as AgreementLife
from ._model import Counter as Counter
from ._model import Negotiation as Negotiation
from ._model import OfferGone as OfferGone
from ._model import ProviderAgent as ProviderAgent
from ._model import ProviderFaults as ProviderFaults
from ._model import ProviderPort as ProviderPort
from ._model import ProviderSpec as ProviderSpec
from ._model import Rejection as Rejection
from ._model import linear_cost as linear_cost
from ._model import negotiate as negotiate
from ._model import offer_properties as offer_properties
from ._runtime import CommandOutcome as CommandOutcome
from ._runtime import Reply as Reply
from ._runtime import Runtime as Runtime
from ._runtime import RuntimeContext as RuntimeContext
from ._runtime import RuntimeFactory as RuntimeFactory
from ._runtime import RuntimeFailure as RuntimeFailure
from ._runtime import ScriptedRuntime as ScriptedRuntime
from ._runtime import scripted_runtime_factory as scripted_runtime_factory
from ._shell import SHELL_COMMANDS as SHELL_COMMANDS
from ._shell import run_shell as run_shell
from ._shell import shell_runtime_factory as shell_runtime_factory

__all__ = [
    "ACCEPT_TIMEOUT",
    "DEBIT_NOTE_INTERVAL",
    "MANIFEST_NAME",
    "PAYMENT_TIMEOUT",
    "SHELL_COMMANDS",
    "AgreementLife",
    "BubblewrapMissing",
    "CommandOutcome",
    "Counter",
    "ImageInfo",
    "ImageManifestError",
    "ImageStore",
    "LocalRuntime",
    "LocalRuntimeConfig",
    "Negotiation",
    "OfferGone",
    "ProviderAgent",
    "ProviderFaults",
    "ProviderPort",
    "ProviderSpec",
    "Rejection",
    "Reply",
    "Runtime",
    "RuntimeContext",
    "RuntimeFactory",
    "RuntimeFailure",
    "ScriptedRuntime",
    "UnknownImage",
    "discover_images",
    "image_hash",
    "images_from_env",
    "linear_cost",
    "load_image_folder",
    "local_runtime_factory",
    "negotiate",
    "offer_properties",
    "run_shell",
    "scripted_runtime_factory",
    "shell_runtime_factory",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
