"""``golem_trio.yagna``: a typed client for the requestor side of the yagna daemon's REST API.

It knows nothing of the layers above it. Start with :class:`YagnaClient` and
:class:`ApiConfig`; errors derive from :class:`YagnaError`.
"""

from golem_trio._exports import fixup_module_metadata

from ._activity import ActivityApi as ActivityApi
from ._activity import ExecEventStream as ExecEventStream
from ._activity import exe_script_text as exe_script_text
from ._client import YagnaClient as YagnaClient
from ._config import DEFAULT_API_URL as DEFAULT_API_URL
from ._config import DEFAULT_GSB_URL as DEFAULT_GSB_URL
from ._config import DEFAULT_MAX_REPLY_SIZE as DEFAULT_MAX_REPLY_SIZE
from ._config import EVENT_WAIT as EVENT_WAIT
from ._config import ApiConfig as ApiConfig
from ._config import RetryPolicy as RetryPolicy
from ._config import Timeouts as Timeouts
from ._convert import Timestamp as Timestamp
from ._convert import format_timestamp as format_timestamp
from ._convert import parse_timestamp as parse_timestamp
from ._errors import ApiError as ApiError
from ._errors import BadRequest as BadRequest
from ._errors import ConfigError as ConfigError
from ._errors import Conflict as Conflict
from ._errors import DaemonTimeout as DaemonTimeout
from ._errors import DaemonUnreachable as DaemonUnreachable
from ._errors import DecodeError as DecodeError
from ._errors import Forbidden as Forbidden
from ._errors import Gone as Gone
from ._errors import NotFound as NotFound
from ._errors import ReplyTooLarge as ReplyTooLarge
from ._errors import RequestTimeout as RequestTimeout
from ._errors import ServerError as ServerError
from ._errors import Unauthorized as Unauthorized
from ._errors import YagnaError as YagnaError
from ._identity import IdentityApi as IdentityApi
from ._market import ApprovalResult as ApprovalResult
from ._market import MarketApi as MarketApi
from ._models import *  # noqa: F403 - the models are all public
from ._models import __all__ as _model_names
from ._monitor import TRANSIENT_ERRORS as TRANSIENT_ERRORS
from ._monitor import DaemonAvailable as DaemonAvailable
from ._monitor import DaemonMonitor as DaemonMonitor
from ._monitor import DaemonUnavailable as DaemonUnavailable
from ._monitor import RideOut as RideOut
from ._monitor import is_transient as is_transient
from ._net import NetApi as NetApi
from ._payment import DEFAULT_REQUESTOR_EVENTS as DEFAULT_REQUESTOR_EVENTS
from ._payment import PaymentApi as PaymentApi

__all__ = [
    "ActivityApi",
    "ExecEventStream",
    "exe_script_text",
    "YagnaClient",
    "DEFAULT_API_URL",
    "DEFAULT_GSB_URL",
    "DEFAULT_MAX_REPLY_SIZE",
    "EVENT_WAIT",
    "ApiConfig",
    "RetryPolicy",
    "Timeouts",
    "Timestamp",
    "format_timestamp",
    "parse_timestamp",
    "ApiError",
    "BadRequest",
    "ConfigError",
    "Conflict",
    "DaemonTimeout",
    "DaemonUnreachable",
    "DecodeError",
    "Forbidden",
    "Gone",
    "NotFound",
    "ReplyTooLarge",
    "RequestTimeout",
    "ServerError",
    "Unauthorized",
    "YagnaError",
    "IdentityApi",
    "ApprovalResult",
    "MarketApi",
    "TRANSIENT_ERRORS",
    "DaemonAvailable",
    "DaemonMonitor",
    "DaemonUnavailable",
    "RideOut",
    "is_transient",
    "NetApi",
    "DEFAULT_REQUESTOR_EVENTS",
    "PaymentApi",
    *_model_names,
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
