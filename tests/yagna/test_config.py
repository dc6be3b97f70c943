import pytest

from golem_trio.yagna import DEFAULT_API_URL, DEFAULT_GSB_URL, ApiConfig, ConfigError, RetryPolicy


def test_from_env_reads_every_variable() -> None:
    env = {
        "YAGNA_APPKEY": "secret-key",
        "YAGNA_API_URL": "http://127.0.0.1:9000/",
        "YAGNA_MARKET_URL": "http://m.local/market-api/v1",
        "YAGNA_ACTIVITY_URL": "http://a.local/activity-api/v1",
        "YAGNA_PAYMENT_URL": "http://p.local/payment-api/v1/",
        "YAGNA_NET_URL": "http://n.local/net-api/v1",
    }
    config = ApiConfig.from_env(env)
    assert config.app_key == "secret-key"
    assert config.api_url == "http://127.0.0.1:9000"
    assert config.market_base == "http://m.local/market-api/v1"
    assert config.activity_base == "http://a.local/activity-api/v1"
    assert config.payment_base == "http://p.local/payment-api/v1"
    assert config.net_base == "http://n.local/net-api/v1"
    assert config.net_v2_base == "http://n.local/net-api/v2"


def test_defaults_derive_from_the_root() -> None:
    config = ApiConfig.from_env({"YAGNA_APPKEY": "k"})
    assert config.api_url == DEFAULT_API_URL
    assert config.market_base == f"{DEFAULT_API_URL}/market-api/v1"
    assert config.activity_base == f"{DEFAULT_API_URL}/activity-api/v1"
    assert config.payment_base == f"{DEFAULT_API_URL}/payment-api/v1"
    assert config.net_base == f"{DEFAULT_API_URL}/net-api/v1"
    assert config.net_v2_base == f"{DEFAULT_API_URL}/net-api/v2"


def test_overrides_win_over_the_environment() -> None:
    config = ApiConfig.from_env(
        {"YAGNA_APPKEY": "k", "YAGNA_API_URL": "http://a"}, api_url="http://b"
    )
    assert config.api_url == "http://b"


@pytest.mark.parametrize("env", [{}, {"YAGNA_APPKEY": ""}])
def test_missing_app_key_is_a_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="YAGNA_APPKEY"):
        ApiConfig.from_env(env)


def test_app_key_never_in_repr() -> None:
    config = ApiConfig(app_key="very-secret-key")
    assert "very-secret-key" not in repr(config)
    assert "very-secret-key" not in str(config)


def test_backoff_is_exponential_jittered_and_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=3.0)
    assert policy.delay(0, 0.0) == pytest.approx(0.25)
    assert policy.delay(0, 1.0) == pytest.approx(0.5)
    assert policy.delay(2, 1.0) == pytest.approx(2.0)
    assert policy.delay(8, 1.0) == pytest.approx(3.0)
    assert policy.delay(8, 0.0) == pytest.approx(1.5)


def test_the_service_bus_url_comes_from_gsb_url_else_the_daemons_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ApiConfig.from_env({"YAGNA_APPKEY": "k"}).gsb_url == DEFAULT_GSB_URL
    env = {"YAGNA_APPKEY": "k", "GSB_URL": "unix:/tmp/bus.sock"}
    assert ApiConfig.from_env(env).gsb_url == "unix:/tmp/bus.sock"
    monkeypatch.setenv("GSB_URL", "tcp://127.0.0.1:17464")
    assert ApiConfig(app_key="k").gsb_url == "tcp://127.0.0.1:17464"
    monkeypatch.delenv("GSB_URL")
    assert ApiConfig(app_key="k").gsb_url == DEFAULT_GSB_URL == "tcp://127.0.0.1:7464"
