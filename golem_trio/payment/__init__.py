"""``golem_trio.payment``: deciding whether debit notes and invoices may be paid.

The rules are pure and synchronous; see :mod:`golem_trio.payment._billing` for each rule, its
tolerance and the reason it reports. Agreement terms are read by :mod:`golem_trio.terms`
(:class:`AgreementTerms`, :class:`Tolerance`; :class:`BillingTermsError` is its
:class:`~golem_trio.terms.TermsError`).
"""

from golem_trio._exports import fixup_module_metadata
from golem_trio.terms import CPU_SEC as CPU_SEC
from golem_trio.terms import DURATION_SEC as DURATION_SEC
from golem_trio.terms import AgreementTerms as AgreementTerms
from golem_trio.terms import TermsError as _TermsError
from golem_trio.terms import Tolerance as Tolerance

from ._billing import INVALID_DEBIT_NOTE as INVALID_DEBIT_NOTE
from ._billing import TOO_MANY_DEBIT_NOTES as TOO_MANY_DEBIT_NOTES
from ._billing import TOO_MANY_PAYABLE_DEBIT_NOTES as TOO_MANY_PAYABLE_DEBIT_NOTES
from ._billing import Accept as Accept
from ._billing import AgreementBilling as AgreementBilling
from ._billing import BillingLedger as BillingLedger
from ._billing import BillingRecord as BillingRecord
from ._billing import Decision as Decision
from ._billing import Reject as Reject
from ._billing import Terminate as Terminate
from ._budget import AgreementSpend as AgreementSpend
from ._budget import BudgetExceeded as BudgetExceeded
from ._budget import BudgetLedger as BudgetLedger
from ._budget import ExhaustedReason as ExhaustedReason
from ._budget import MarginRatio as MarginRatio
from ._processor import AgreementTerminatedForBilling as AgreementTerminatedForBilling
from ._processor import DebitNoteAccepted as DebitNoteAccepted
from ._processor import DebitNoteRefused as DebitNoteRefused
from ._processor import InvoiceAccepted as InvoiceAccepted
from ._processor import InvoiceRejected as InvoiceRejected
from ._processor import PaymentEvent as PaymentEvent
from ._processor import PaymentProcessor as PaymentProcessor
from ._processor import PaymentReport as PaymentReport
from ._processor import Unpaid as Unpaid
from ._processor import open_payments as open_payments

#: This package's name for :class:`~golem_trio.terms.TermsError` (the same class).
BillingTermsError = _TermsError

__all__ = [
    "CPU_SEC",
    "DURATION_SEC",
    "INVALID_DEBIT_NOTE",
    "TOO_MANY_DEBIT_NOTES",
    "TOO_MANY_PAYABLE_DEBIT_NOTES",
    "Accept",
    "AgreementBilling",
    "AgreementSpend",
    "AgreementTerminatedForBilling",
    "AgreementTerms",
    "BillingLedger",
    "BillingRecord",
    "BillingTermsError",
    "BudgetExceeded",
    "BudgetLedger",
    "DebitNoteAccepted",
    "DebitNoteRefused",
    "Decision",
    "ExhaustedReason",
    "InvoiceAccepted",
    "InvoiceRejected",
    "MarginRatio",
    "PaymentEvent",
    "PaymentProcessor",
    "PaymentReport",
    "Reject",
    "Terminate",
    "Tolerance",
    "Unpaid",
    "open_payments",
]

fixup_module_metadata(__name__, __all__, globals())
del fixup_module_metadata
