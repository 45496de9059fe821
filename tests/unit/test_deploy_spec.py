"""``[deploy.ENV]``: every key typed and checked at load, errors that name file, table and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagkeeper.config import load_file, validate
from tagkeeper.deploy.spec import DeploySpec, MetricsSource, Network, Strategy
from tagkeeper.deploy.spec_toml import KEYS, from_table
from tagkeeper.errors import ConfigError, ExitCode, UsageError

SOURCE = Path("/srv/app/tagkeeper.toml")
ANY = "0.0.0.0"  # noqa: S104 - a value in a table; nothing binds here
BASE: dict[str, Any] = {
    "image": "ghcr.io/acme/app",
    "container": "app",
    "port": 8520,
    "network": "host",
    "port-env": "SERVER_PORT",
}


def _spec(**extra: Any) -> DeploySpec:
    table = {**BASE, **extra}
    return from_table("prod", table, source=SOURCE, where="tagkeeper.toml [deploy.prod]")


def _refused(extra: dict[str, Any], *, base: dict[str, Any] | None = None) -> ConfigError:
    table = {**(BASE if base is None else base), **extra}
    with pytest.raises(ConfigError) as info:
        from_table("prod", table, source=SOURCE, where="tagkeeper.toml [deploy.prod]")
    assert info.value.exit_code is ExitCode.CONFIG
    assert "tagkeeper.toml [deploy.prod]" in info.value.message
    return info.value


def test_defaults_carry_their_documented_values() -> None:
    spec = _spec()
    assert spec.strategy is Strategy.RECREATE
    assert spec.health == ("/actuator/health",)
    assert (spec.health_timeout, spec.interval, spec.successes) == (120.0, 2.0, 3)
    assert spec.stop_timeout == 35.0
    assert spec.spare_port == 18520
    assert spec.restart == "unless-stopped"
    assert spec.slot_ports == (8520, 8521)
    assert spec.steps == (5, 10, 50, 100)
    assert (spec.step_time, spec.watch, spec.watch_interval) == (120.0, 600.0, 30.0)
    assert (spec.max_error_rate, spec.max_p95, spec.min_requests) == (0.01, 0.8, 50)
    assert spec.keep_previous == "running"
    assert spec.upstream_name == "app"
    assert spec.fails_inconclusive()
    dev = from_table("dev", {**BASE}, source=None, where="x")
    assert not dev.fails_inconclusive()


def test_every_key_of_both_issues_is_read_into_the_spec(tmp_path: Path) -> None:
    table: dict[str, Any] = {
        "strategy": "canary",
        "image": "ghcr.io/acme/app",
        "container": "app",
        "port": 8520,
        "network": "bridge",
        "bind": ANY,
        "port-env": "SERVER_PORT",
        "env-file": "prod.env",
        "env": {"SPRING_PROFILES_ACTIVE": "prod", "WORKERS": 4},
        "volumes": ["./data:/data", "logs:/var/log/app:ro", "/etc/app:/etc/app:ro,z"],
        "restart": "on-failure:5",
        "memory": "512m",
        "cpus": 1.5,
        "user": "1000:1000",
        "labels": {"team": "backend"},
        "command": ["java", "-jar", "/app.jar"],
        "health": ["/actuator/health/readiness", "/actuator/health/liveness"],
        "health-timeout": "90s",
        "interval": "500ms",
        "successes": 2,
        "smoke": "smoke.toml",
        "candidate-port": 28520,
        "stop-timeout": "40s",
        "slots": ["a", "b"],
        "ports": [9001, 9002],
        "proxy": "nginx",
        "proxy-config": "/etc/nginx/tagkeeper/app.conf",
        "upstream": "app_backend",
        "proxy-url": "http://127.0.0.1:8080/",
        "proxy-test": ["nginx", "-t", "-c", "/etc/nginx/nginx.conf"],
        "proxy-reload": ["systemctl", "reload", "nginx"],
        "traefik-api": "127.0.0.1:9080",
        "steps": [10, 50, 100],
        "step-time": "1m",
        "watch": "15m",
        "watch-interval": "20s",
        "max-error-rate": "0.5%",
        "max-p95": "900ms",
        "max-p95-ratio": 1.5,
        "min-requests": 20,
        "metrics": "prometheus:http://127.0.0.1:9090",
        "metrics-queries": {"p95": 'histogram_quantile(0.95, x{i="{instance}"}[{window}])'},
        "keep-previous": "stopped",
        "inconclusive": "pass",
    }
    # the test covers every key there is; pass-env is the script strategy's (below)
    assert set(table) | {"pass-env"} == set(KEYS)
    source = tmp_path / "tagkeeper.toml"
    spec = from_table("prod", table, source=source, where="w")
    assert spec.strategy is Strategy.CANARY
    assert spec.network is Network.BRIDGE
    assert spec.bind_address == ANY
    assert spec.env_file == tmp_path / "prod.env"
    assert spec.smoke == tmp_path / "smoke.toml"
    assert spec.env == {"SPRING_PROFILES_ACTIVE": "prod", "WORKERS": "4"}
    assert spec.volumes == (
        f"{tmp_path}/data:/data",
        "logs:/var/log/app:ro",
        "/etc/app:/etc/app:ro,z",
    )
    assert spec.memory == 512 * 1024 * 1024
    assert spec.cpus == 1.5
    assert spec.command == ("java", "-jar", "/app.jar")
    assert spec.health_timeout == 90.0
    assert spec.interval == 0.5
    assert spec.successes == 2
    assert spec.spare_port == 28520
    assert spec.stop_timeout == 40.0
    assert spec.slot_ports == (9001, 9002)
    assert spec.slots == ("a", "b")
    assert spec.proxy_url == "http://127.0.0.1:8080"
    assert spec.proxy_test_command == ("nginx", "-t", "-c", "/etc/nginx/nginx.conf")
    assert spec.proxy_reload_command == ("systemctl", "reload", "nginx")
    assert spec.upstream_name == "app_backend"
    assert spec.traefik_api == "127.0.0.1:9080"
    assert spec.max_error_rate == pytest.approx(0.005)
    assert spec.max_p95 == pytest.approx(0.9)
    assert spec.max_p95_ratio == 1.5
    assert spec.metrics == MetricsSource("prometheus", "http://127.0.0.1:9090")
    assert spec.keep_previous == "stopped"
    assert not spec.fails_inconclusive()


# One refused value per key: each is a ConfigError naming the key and the value.
BAD_VALUES: list[tuple[str, Any]] = [
    ("strategy", "rolling"),
    ("image", "ghcr.io/acme/app:v1"),
    ("image", 7),
    ("container", "-app"),
    ("container", "a" * 64),
    ("port", 0),
    ("port", 65536),
    ("port", "8520"),
    ("port", True),
    ("network", "overlay"),
    ("bind", "localhost"),
    ("port-env", "1PORT"),
    ("env-file", ""),
    ("env-file", "~nosuchuser0/x"),
    ("env", {"A B": "x"}),
    ("env", {"A": 1.5}),
    ("env", "A=1"),
    ("volumes", ["/data"]),
    ("volumes", ["/data:data"]),
    ("volumes", ["/data:/data:rx"]),
    ("volumes", "/a:/b"),
    ("volumes", ["~nosuchuser0/x:/b"]),
    ("restart", "sometimes"),
    ("restart", "on-failure:0"),
    ("memory", "lots"),
    ("memory", "1m"),
    ("memory", 512),
    ("cpus", 0),
    ("cpus", float("nan")),
    ("cpus", "2"),
    ("user", ""),
    ("labels", {"org.tagkeeper.env": "x"}),
    ("labels", {"a": 1}),
    ("command", "java -jar app.jar"),
    ("command", []),
    ("command", ["", "x"]),
    ("health", "actuator/health"),
    ("health", []),
    ("health", ["/a b"]),
    ("health-timeout", 120),
    ("health-timeout", "0s"),
    ("health-timeout", "2 minutes"),
    ("interval", "0"),
    ("successes", 0),
    ("successes", "3"),
    ("smoke", 1),
    ("candidate-port", 70000),
    ("stop-timeout", "35"),
    ("slots", ["blue"]),
    ("slots", ["blue", "blue"]),
    ("slots", ["Blue", "green"]),
    ("ports", [0]),
    ("ports", 8520),
    ("proxy", "haproxy"),
    ("proxy-config", ""),
    ("upstream", "a b"),
    ("proxy-url", "127.0.0.1:80"),
    ("proxy-url", "ftp://x"),
    ("proxy-test", "nginx -t"),
    ("proxy-reload", []),
    ("traefik-api", "127.0.0.1"),
    ("traefik-api", "http://127.0.0.1:8080"),
    ("steps", [50, 10, 100]),
    ("steps", [5, 10, 50]),
    ("steps", [0, 100]),
    ("steps", [5, 5, 100]),
    ("step-time", "0s"),
    ("watch", "10"),
    ("watch-interval", "0s"),
    ("max-error-rate", 0.01),
    ("max-error-rate", "1"),
    ("max-error-rate", "150%"),
    ("max-p95", "fast"),
    ("max-p95", 0.8),
    ("max-p95-ratio", 0.5),
    ("max-p95-ratio", "1.5"),
    ("min-requests", 0),
    ("metrics", "statsd:x"),
    ("metrics", "prometheus:localhost:9090"),
    ("metrics", "access-log:"),
    ("metrics-queries", {"latency": "x"}),
    ("metrics-queries", {"p95": 'x{pod="{pod}"}'}),
    ("keep-previous", "paused"),
    ("inconclusive", "ignore"),
    ("pass-env", "PROFILE"),
    ("pass-env", ["APP-NAME"]),
]


def test_the_bad_values_cover_every_key() -> None:
    assert {key for key, _ in BAD_VALUES} == set(KEYS)


@pytest.mark.parametrize(("key", "value"), BAD_VALUES, ids=[f"{k}={v!r}" for k, v in BAD_VALUES])
def test_a_refused_value_names_the_key_the_value_and_what_is_allowed(key: str, value: Any) -> None:
    error = _refused({key: value})
    assert f"key {key!r}" in error.message
    assert "it must be" in error.message


def test_an_unknown_key_is_refused_never_dropped() -> None:
    error = _refused({"healthcheck": "/health"})
    assert "unknown key 'healthcheck'" in error.message
    assert error.hint is not None
    assert "health-timeout" in error.hint


@pytest.mark.parametrize(
    ("extra", "base", "words"),
    [
        ({"network": "host"}, {k: v for k, v in BASE.items() if k != "port-env"}, "port-env"),
        ({"candidate-port": 8520}, None, "must differ"),
        ({"port": 60000}, None, "candidate-port"),
        ({}, {k: v for k, v in BASE.items() if k != "image"}, "'image'"),
        ({}, {k: v for k, v in BASE.items() if k != "container"}, "'container'"),
        ({}, {k: v for k, v in BASE.items() if k != "port"}, "'port'"),
        ({"bind": ANY}, None, "'bind' applies to network = \"bridge\""),
        ({"strategy": "bluegreen"}, None, "'proxy'"),
        (
            {"strategy": "canary", "proxy": "nginx", "proxy-config": "/x", "proxy-url": "http://h"},
            None,
            "'metrics'",
        ),
        (
            {"strategy": "bluegreen", "proxy": "nginx", "proxy-config": "/x",
             "proxy-url": "http://h", "ports": [1, 1]},
            None,
            "distinct",
        ),
        (
            {"strategy": "bluegreen", "proxy": "nginx", "proxy-config": "/x",
             "proxy-url": "http://h", "ports": [1, 2, 3]},
            None,
            "one port per slot",
        ),
        ({"pass-env": ["PROFILE"]}, None, "'pass-env' applies to strategy \"script\""),
    ],
)  # fmt: skip
def test_rules_across_keys(extra: dict[str, Any], base: dict[str, Any] | None, words: str) -> None:
    error = _refused(extra, base=base)
    assert words in error.diagnostics()


def test_script_strategy_needs_no_container_keys() -> None:
    spec = from_table("prod", {"strategy": "script"}, source=None, where="w")
    assert spec.strategy is Strategy.SCRIPT
    assert spec.pass_env == ()


def test_the_script_strategy_reads_pass_env() -> None:
    table = {"strategy": "script", "pass-env": ["PROFILE", "APP_*", "PROFILE", "*"]}
    spec = from_table("prod", table, source=None, where="w")
    assert spec.pass_env == ("PROFILE", "APP_*", "*")
    with pytest.raises(UsageError, match="names no container"):
        _ = spec.container_name


def test_a_library_user_gets_the_same_rules() -> None:
    with pytest.raises(UsageError, match="port-env"):
        DeploySpec("prod", image="ghcr.io/a/b", container="c", port=1, network=Network.HOST)
    spec = DeploySpec("prod", image="ghcr.io/a/b", container="c", port=80)
    assert spec.network is Network.BRIDGE
    assert spec.bind_address == "127.0.0.1"
    with pytest.raises(UsageError, match="differ"):
        spec.with_overrides(candidate_port=80)


def test_a_library_user_cannot_build_three_slots_or_a_bad_traefik_api() -> None:
    keys: dict[str, Any] = {
        "strategy": Strategy.BLUEGREEN, "image": "ghcr.io/a/b", "container": "c", "port": 80,
        "proxy": "traefik", "proxy_config": Path("/etc/traefik/dynamic/c.yml"),
        "proxy_url": "http://127.0.0.1:80",
    }  # fmt: skip
    assert DeploySpec("prod", **keys).traefik_api == "127.0.0.1:8080"
    with pytest.raises(UsageError, match="two different slots"):
        DeploySpec("prod", slots=("a", "b", "c"), **keys)
    with pytest.raises(UsageError, match="two different slots"):
        DeploySpec("prod", slots=("a", "a"), **keys)
    with pytest.raises(UsageError, match="HOST:PORT"):
        DeploySpec("prod", traefik_api="127.0.0.1", **keys)


def test_environment_names_follow_the_one_grammar() -> None:
    with pytest.raises(ConfigError, match="not an environment name"):
        from_table(" prod", BASE, source=None, where="w")


def test_config_files_hand_the_deploy_tables_to_the_spec(tmp_path: Path) -> None:
    toml = tmp_path / "tagkeeper.toml"
    toml.write_text(
        'env = "prod"\n[deploy.prod]\nimage = "ghcr.io/acme/app"\ncontainer = "app"\n'
        'port = 8520\nnetwork = "host"\nport-env = "SERVER_PORT"\nenv-file = "prod.env"\n'
        '[deploy.staging]\nstrategy = "script"\n',
        encoding="utf-8",
    )
    config = load_file(toml)
    prod = config.deploy_spec("prod")
    assert prod is not None
    assert prod.env_file == tmp_path / "prod.env"
    assert prod.source == toml
    staging = config.deploy_spec("staging")
    assert staging is not None
    assert staging.strategy is Strategy.SCRIPT
    assert config.deploy_spec("dev") is None


def test_pyproject_tables_are_named_with_their_prefix(tmp_path: Path) -> None:
    py = tmp_path / "pyproject.toml"
    py.write_text(
        '[tool.tagkeeper.deploy.prod]\nimage = "ghcr.io/acme/app"\ncontainer = "app"\n'
        "port = 8520\nstop-timeout = 35\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_file(py)
    message = info.value.message
    assert str(py) in message
    assert "[tool.tagkeeper.deploy.prod]" in message
    assert "'stop-timeout'" in message
    assert "35" in message


def test_a_deploy_entry_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\[deploy.prod\]: must be a table"):
        validate({"deploy": {"prod": "recreate"}}, SOURCE)
    with pytest.raises(ConfigError, match="'deploy'"):
        validate({"deploy": "prod"}, SOURCE)


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.lists(st.one_of(st.text(max_size=10), st.integers()), max_size=4),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers()), max_size=3),
)


@settings(max_examples=400, deadline=None)
@given(key=st.sampled_from(KEYS), value=_JUNK)
def test_any_value_of_any_key_is_either_accepted_or_a_config_error(key: str, value: Any) -> None:
    error: ConfigError | None = None
    try:
        spec: DeploySpec | None = from_table("prod", {**BASE, key: value}, source=SOURCE, where="w")
    except ConfigError as exc:
        error, spec = exc, None
    if error is not None:
        assert "w:" in error.message
    else:
        assert isinstance(spec, DeploySpec)


def test_two_environments_cannot_share_a_container(tmp_path: Path) -> None:
    # their locks differ (one per environment), so they would replace each other's container
    toml = tmp_path / "tagkeeper.toml"
    table = 'image = "ghcr.io/acme/app"\ncontainer = "app"\nport = {port}\n'
    toml.write_text(
        "[deploy.prod]\n" + table.format(port=8520) + "[deploy.staging]\n"
        + table.format(port=8530) + '[deploy.dev]\nstrategy = "script"\n',
        encoding="utf-8",
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_file(toml)
    assert "[deploy.staging]" in info.value.message
    assert "[deploy.prod]" in info.value.message
    assert "'app'" in info.value.message


def test_two_environments_cannot_use_the_same_port(tmp_path: Path) -> None:
    # staging's service would take the port prod's candidate needs (or the other way)
    toml = tmp_path / "tagkeeper.toml"
    toml.write_text(
        '[deploy.prod]\nimage = "ghcr.io/acme/app"\ncontainer = "app"\nport = 8520\n'
        '[deploy.staging]\nimage = "ghcr.io/acme/app"\ncontainer = "app-staging"\n'
        "port = 18520\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_file(toml)
    message = info.value.message
    assert "[deploy.staging]" in message
    assert "port 18520" in message
    assert "[deploy.prod]" in message


def test_bridge_services_on_different_addresses_may_share_a_port_number(tmp_path: Path) -> None:
    toml = tmp_path / "tagkeeper.toml"
    toml.write_text(
        '[deploy.prod]\nimage = "ghcr.io/acme/app"\ncontainer = "app"\nport = 8520\n'
        'bind = "127.0.0.2"\n'
        '[deploy.staging]\nimage = "ghcr.io/acme/app"\ncontainer = "app-staging"\n'
        'port = 8520\nbind = "127.0.0.3"\n',
        encoding="utf-8",
    )
    config = load_file(toml)
    assert config.deploy_spec("staging") is not None
