"""``golem_trio.market``: what a demand asks for.

Demands are built by :func:`build_demand` (or a :class:`DemandBuilder`); their constraints are
trees built with :func:`prop` and :class:`Constraints`, read with :func:`parse`, written with
:func:`render` and checked against offers locally with :func:`evaluate`.

Payloads (:class:`VmPayload`, :class:`ManifestPayload`, :class:`CustomPayload`) give the demand
properties and constraint clauses; :mod:`golem_trio.market.vm` builds VM payloads as yapapi's
``vm.repo`` and ``vm.manifest`` do. Image URLs come from an :class:`ImageResolver`.
"""

from golem_trio._exports import fixup_module_metadata
from golem_trio.terms import ACCEPT_TIMEOUT as ACCEPT_TIMEOUT
from golem_trio.terms import CPU_SEC as CPU_SEC
from golem_trio.terms import DEBIT_NOTE_INTERVAL as DEBIT_NOTE_INTERVAL
from golem_trio.terms import DURATION_SEC as DURATION_SEC
from golem_trio.terms import PAYMENT_TIMEOUT as PAYMENT_TIMEOUT
from golem_trio.terms import Pricing as Pricing

from . import vm as vm
from ._constraints import And as And
from ._constraints import Compare as Compare
from ._constraints import Constraint as Constraint
from ._constraints import ConstraintError as ConstraintError
from ._constraints import Constraints as Constraints
from ._constraints import ConstraintSyntaxError as ConstraintSyntaxError
from ._constraints import Empty as Empty
from ._constraints import Not as Not
from ._constraints import Op as Op
from ._constraints import Or as Or
from ._constraints import Present as Present
from ._constraints import Property as Property
from ._constraints import TypeHint as TypeHint
from ._constraints import as_constraint as as_constraint
from ._constraints import evaluate as evaluate
from ._constraints import parse as parse
from ._constraints import prop as prop
from ._constraints import render as render
from ._demand import CHOSEN_PLATFORM as CHOSEN_PLATFORM
from ._demand import DEFAULT_ACCEPT_TIMEOUT as DEFAULT_ACCEPT_TIMEOUT
from ._demand import EXPIRATION as EXPIRATION
from ._demand import MULTI_ACTIVITY as MULTI_ACTIVITY
from ._demand import SUBNET as SUBNET
from ._demand import DemandBuilder as DemandBuilder
from ._demand import DemandError as DemandError
from ._demand import InvalidPlatform as InvalidPlatform
from ._demand import build_demand as build_demand
from ._demand import counter_properties as counter_properties
from ._demand import platform_address_property as platform_address_property
from ._negotiation import Admit as Admit
from ._negotiation import AgreementInfo as AgreementInfo
from ._negotiation import AgreementRejected as AgreementRejected
from ._negotiation import AgreementSigned as AgreementSigned
from ._negotiation import AgreementWithdrawn as AgreementWithdrawn
from ._negotiation import Negotiation as Negotiation
from ._negotiation import NotAdmitted as NotAdmitted
from ._negotiation import ProposalReceived as ProposalReceived
from ._negotiation import ProposalRejected as ProposalRejected
from ._negotiation import ProviderBanned as ProviderBanned
from ._negotiation import open_negotiation as open_negotiation
from ._offers import AllowList as AllowList
from ._offers import Ban as Ban
from ._offers import DenyList as DenyList
from ._offers import FilterResult as FilterResult
from ._offers import MinResources as MinResources
from ._offers import OfferError as OfferError
from ._offers import OfferFilter as OfferFilter
from ._offers import OfferPool as OfferPool
from ._offers import OfferView as OfferView
from ._offers import PoolEntry as PoolEntry
from ._offers import PriceCaps as PriceCaps
from ._offers import ProviderBans as ProviderBans
from ._offers import Scorer as Scorer
from ._offers import all_of as all_of
from ._offers import any_of as any_of
from ._offers import chain as chain
from ._offers import cheapest as cheapest
from ._offers import estimate_cost as estimate_cost
from ._offers import prefer as prefer
from ._offers import weighted as weighted
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
    "ACCEPT_TIMEOUT",
    "CHOSEN_PLATFORM",
    "CPU_SEC",
    "DEBIT_NOTE_INTERVAL",
    "DEFAULT_ACCEPT_TIMEOUT",
    "DEFAULT_REGISTRY_URL",
    "DEFAULT_STATIC_URL_TEMPLATE",
    "DURATION_SEC",
    "EXPIRATION",
    "MULTI_ACTIVITY",
    "PAYMENT_TIMEOUT",
    "REGISTRY_URL_ENV",
    "SUBNET",
    "Admit",
    "AgreementInfo",
    "AgreementRejected",
    "AgreementSigned",
    "AgreementWithdrawn",
    "AllowList",
    "And",
    "BadRegistryReply",
    "Ban",
    "Compare",
    "Constraint",
    "ConstraintError",
    "ConstraintSyntaxError",
    "Constraints",
    "CustomPayload",
    "DemandBuilder",
    "DemandError",
    "DenyList",
    "Empty",
    "FilterResult",
    "ImageNotFound",
    "ImageResolver",
    "InvalidPlatform",
    "ManifestPayload",
    "MinResources",
    "Negotiation",
    "Not",
    "NotAdmitted",
    "OfferError",
    "OfferFilter",
    "OfferPool",
    "OfferView",
    "Op",
    "Or",
    "Payload",
    "PayloadError",
    "PoolEntry",
    "Present",
    "PriceCaps",
    "Pricing",
    "Property",
    "ProposalReceived",
    "ProposalRejected",
    "ProviderBanned",
    "ProviderBans",
    "RegistryError",
    "RegistryResolver",
    "RegistryUnavailable",
    "ResolvedImage",
    "Scorer",
    "StaticResolver",
    "TypeHint",
    "VmPayload",
    "all_of",
    "any_of",
    "as_constraint",
    "build_demand",
    "chain",
    "cheapest",
    "counter_properties",
    "current_resolver",
    "estimate_cost",
    "evaluate",
    "get_resolver",
    "open_negotiation",
    "parse",
    "platform_address_property",
    "prefer",
    "prop",
    "render",
    "use_resolver",
    "vm",
    "weighted",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
