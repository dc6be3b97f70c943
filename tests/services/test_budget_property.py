"""The budget as a property of whole engines: Hypothesis draws the providers' prices, threads
and debit-note intervals, the number of instances, how hard they work, how long they run and
the budget; one engine on LocalNet (virtual time) runs them, and the money is checked against
the network's ledger (docs/architecture.md §5.4).

- Spend never exceeds the budget, and every honest invoice is paid (the exposure reserved
  before signing covers the final invoice): the ledger invariants hold.
- Nothing is stopped for budget while the exposure fits: a ``BudgetLimitReached`` comes only
  with a projection over the budget, and an instance stops as ``BudgetExhausted`` only after
  one came.
- What is signed fits: at every signing, the exposures of the agreements open at that moment
  (each at most its worst case over one unbilled window plus the stop allowance) stay within
  the budget.
"""

from __future__ import annotations

from decimal import Decimal

import hypothesis
import hypothesis.strategies as st
import trio
import trio.testing
from _faults_support import Recorder, open_stage

from golem_trio.events import AgreementSigned, BudgetLimitReached, ClusterCappedByBudget
from golem_trio.localnet import ProviderSpec
from golem_trio.services import BudgetExhausted, ServiceState

PRICE = st.decimals(min_value=0, max_value=Decimal("0.002"), places=6)
START = st.decimals(min_value=0, max_value=Decimal("0.05"), places=4)


@st.composite
def providers(draw: st.DrawFn) -> list[ProviderSpec]:
    count = draw(st.integers(2, 6))
    return [
        ProviderSpec(
            name=f"p{i}",
            price_cpu_sec=draw(PRICE),
            price_duration_sec=draw(PRICE),
            price_start=draw(START),
            cpu_threads=draw(st.integers(1, 4)),
            debit_note_interval=draw(st.sampled_from([60, 120, 300])),
            tick=5.0,
        )
        for i in range(count)
    ]


@hypothesis.settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    specs=providers(),
    instances=st.integers(1, 8),
    work_every=st.sampled_from([None, 3.0, 20.0]),
    minutes=st.integers(3, 40),
    budget=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(4), places=3),
)
async def test_spend_stays_within_the_budget_and_nothing_stops_while_it_fits(
    autojump_clock: trio.testing.MockClock,
    specs: list[ProviderSpec],
    instances: int,
    work_every: float | None,
    minutes: int,
    budget: Decimal,
) -> None:
    # Whole seconds stay exact on the shared clock (see test_cluster_faults).
    for _ in range(2):
        now = trio.current_time()
        autojump_clock.jump((now // 2**16 + 1) * 2**16 - now if now % 2**16 else 0.0)
    exposures: list[tuple[Decimal, Decimal]] = []
    with trio.fail_after(6 * 3600):
        async with open_stage(providers=specs, budget=budget) as stage:
            ledger = stage.golem.payments.budget

            def watch(event: object) -> None:
                if isinstance(event, AgreementSigned):
                    exposures.append((ledger.exposure(), ledger.limit))

            stage.golem.add_event_consumer(watch)
            cluster = await stage.golem.run_service(
                Recorder, instance_params=stage.params(instances, work_every=work_every)
            )
            await trio.sleep(minutes * 60)
            await cluster.stop()
    stage.check_network()
    report = stage.golem.payment_report
    assert report is not None
    assert report.spent <= budget
    assert report.unpaid == ()
    assert len(exposures) == len([e for e in stage.events if isinstance(e, AgreementSigned)])
    for exposure, limit in exposures:
        assert exposure <= limit, (exposure, limit)
    limits = [e for e in stage.events if isinstance(e, BudgetLimitReached)]
    for reached in limits:
        assert reached.projected > reached.budget, reached
    stopped_for_budget = [
        r for r in cluster.records if any(isinstance(x, BudgetExhausted) for x in r.stop_reasons)
    ]
    if not limits:
        assert stopped_for_budget == []
    for record in cluster.records:
        assert record.state is ServiceState.TERMINATED
    capped = [e for e in stage.events if isinstance(e, ClusterCappedByBudget)]
    hypothesis.event("capped by budget" if capped else "all carried")
    hypothesis.event("budget limit reached" if limits else "no budget stop")
