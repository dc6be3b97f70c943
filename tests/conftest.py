"""Settings shared by the whole test suite."""

from hypothesis import HealthCheck, settings

# The machines that run these tests are shared and small: no per-example deadline and no
# "too slow" health check, so that a busy neighbour cannot fail a property test. Tests that set
# their own settings inherit these for what they leave unsaid.
settings.register_profile(
    "golem-trio",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("golem-trio")
