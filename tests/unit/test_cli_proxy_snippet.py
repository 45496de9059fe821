"""``tagkeeper proxy-snippet``: what it prints, --init, and refused input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tagkeeper.cli import main
from tagkeeper.deploy.metrics.accesslog import AccessLog
from tagkeeper.deploy.metrics.factory import open_source
from tagkeeper.deploy.metrics.prometheus import Prometheus
from tagkeeper.deploy.proxies.factory import open_proxy
from tagkeeper.deploy.proxies.model import Slot
from tagkeeper.deploy.proxies.nginx import NginxProxy
from tagkeeper.deploy.proxies.snippet import ProxySetup, setup_from_spec, snippet
from tagkeeper.deploy.proxies.traefik import TraefikProxy, parse_yaml_subset
from tagkeeper.deploy.spec import DeploySpec, MetricsSource, Network, Strategy
from tagkeeper.errors import ExitCode, UsageError

SLOTS = (Slot("blue", "127.0.0.1", 8520), Slot("green", "127.0.0.1", 8521))


def flags(proxy: str, config: Path) -> list[str]:
    return ["proxy-snippet", "--proxy", proxy, "--proxy-config", str(config), "--ports",
            "8520,8521", "--proxy-url", "http://127.0.0.1:8080", "--upstream", "shop-api"]


def test_nginx_snippet_names_the_owned_file_and_the_probe_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owned = tmp_path / "nginx" / "shop-api.conf"
    assert main(flags("nginx", owned)) == 0
    out, err = capsys.readouterr()
    assert f"include {owned};" in out
    assert "log_format tagkeeper_json_shop_api escape=json" in out
    assert "proxy_pass http://shop-api;" in out
    assert "add_header X-Tagkeeper-Upstream $tagkeeper_probe_shop_api always;" in out
    assert "keepalive_timeout 0;" in out
    assert "--init" in err
    assert not owned.exists()


def test_keepalive_is_the_users_choice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main([*flags("nginx", tmp_path / "a.conf"), "--keepalive"]) == 0
    out = capsys.readouterr().out
    assert "keepalive_timeout 65s;" in out
    assert "keepalive_timeout 0;" not in out.replace("`keepalive_timeout 0;`", "")


def test_init_creates_the_owned_file_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owned = tmp_path / "dynamic" / "shop-api.yml"
    assert main([*flags("traefik", owned), "--init", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["created"] == str(owned)
    first = owned.read_bytes()
    proxy = TraefikProxy(owned, SLOTS, "shop-api", client=None,  # type: ignore[arg-type]
                         api_url="http://127.0.0.1:1", probe_url="http://127.0.0.1:1/")
    read = proxy.read()
    assert read.trusted
    assert read.weights is not None
    assert read.weights.as_dict() == {"blue": 100, "green": 0}
    assert main([*flags("traefik", owned), "--init"]) == 0
    assert owned.read_bytes() == first  # never overwritten
    assert "left as it is" in capsys.readouterr().err


def test_traefik_snippet_watches_a_directory_and_keeps_the_probe_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owned = tmp_path / "dynamic" / "shop-api.yml"
    assert main([*flags("traefik", owned), "--format", "json"]) == 0
    parts = json.loads(capsys.readouterr().out)["parts"]
    static = parse_yaml_subset(parts["static"]["text"].replace("[web]", "web"))
    assert static["providers"]["file"] == {"directory": str(owned.parent), "watch": True}
    assert static["accessLog"]["fields"]["headers"]["names"] == {"X-Tagkeeper-Probe": "keep"}
    assert static["entryPoints"]["traefik"]["address"] == "127.0.0.1:8080"
    router = parse_yaml_subset(parts["router"]["text"].replace("[web]", "web"))
    assert router["http"]["routers"]["shop-api"]["service"] == "shop-api"


@pytest.mark.parametrize(
    "args",
    [
        ["proxy-snippet", "--proxy", "nginx"],
        ["proxy-snippet", "--proxy", "haproxy", "--proxy-config", "/x.conf", "--ports", "1,2",
         "--proxy-url", "http://127.0.0.1"],
        ["proxy-snippet", "--proxy", "traefik", "--proxy-config", "/x/app.json", "--ports", "1,2",
         "--proxy-url", "http://127.0.0.1"],
        ["proxy-snippet", "--proxy", "nginx", "--proxy-config", "/x.conf", "--ports", "1,1",
         "--proxy-url", "http://127.0.0.1"],
        ["proxy-snippet", "--proxy", "nginx", "--proxy-config", "/x.conf", "--ports", "1,2",
         "--proxy-url", "ftp://127.0.0.1"],
        ["proxy-snippet", "--proxy", "nginx", "--proxy-config", "/x.conf", "--ports", "1,2",
         "--proxy-url", "http://127.0.0.1", "--upstream", "a b"],
    ],
)
def test_bad_input_is_exit_2_with_nothing_printed(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert "tagkeeper:" in err


def _spec(**changes: object) -> DeploySpec:
    values: dict[str, object] = {
        "strategy": Strategy.BLUEGREEN,
        "image": "ghcr.io/acme/app",
        "container": "app",
        "port": 8520,
        "network": Network.HOST,
        "port_env": "SERVER_PORT",
        "proxy": "nginx",
        "proxy_config": Path("/etc/nginx/tagkeeper/app.conf"),
        "proxy_url": "http://127.0.0.1:80",
        "metrics": MetricsSource("access-log", "/var/log/nginx/app.json"),
    }
    values.update(changes)
    return DeploySpec("prod", **values)  # type: ignore[arg-type]


def test_a_spec_gives_the_setup_and_its_access_log() -> None:
    setup = setup_from_spec(_spec())
    assert setup.slots == SLOTS
    assert setup.log_path == Path("/var/log/nginx/app.json")
    assert "access_log /var/log/nginx/app.json tagkeeper_json_app;" in snippet(setup).text()
    with pytest.raises(UsageError, match="proxy-url"):
        setup_from_spec(_spec(proxy_url=None))


def test_factories_open_the_named_adapters(tmp_path: Path) -> None:
    import httpx

    with httpx.Client() as client:
        setup = ProxySetup("nginx", "app", tmp_path / "a.conf", SLOTS, "http://127.0.0.1:81/")
        nginx = open_proxy(setup, client)
        assert isinstance(nginx, NginxProxy)
        assert nginx.probe_url == "http://127.0.0.1:81/actuator/health"
        assert nginx.test_command == ["nginx", "-t", "-q"]
        setup = ProxySetup("traefik", "app", tmp_path / "a.yml", SLOTS, "http://127.0.0.1:81",
                           access_log=tmp_path / "access.log")
        traefik = open_proxy(setup, client)
        assert isinstance(traefik, TraefikProxy)
        assert traefik.test_command is None
        assert traefik.reload_command is None
        assert isinstance(open_source("access-log", "/var/log/x.json", client), AccessLog)
        assert isinstance(open_source("prometheus", "http://127.0.0.1:9090", client), Prometheus)
        with pytest.raises(UsageError):
            open_source("prometheus", "http://10.0.0.1:9090", client)
        with pytest.raises(UsageError):
            open_source("statsd", "x", client)


def test_env_reads_the_proxy_keys_of_the_deploy_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    owned = tmp_path / "nginx" / "app.conf"
    (tmp_path / "tagkeeper.toml").write_text(
        "[deploy.prod]\n"
        'strategy = "bluegreen"\nimage = "ghcr.io/acme/app"\ncontainer = "app"\n'
        'port = 8520\nnetwork = "host"\nport-env = "SERVER_PORT"\n'
        f'proxy = "nginx"\nproxy-config = "{owned}"\nproxy-url = "http://127.0.0.1:80"\n'
        'metrics = "access-log:/var/log/nginx/app.json"\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    assert main(["proxy-snippet", "--env", "prod", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["upstream"] == "app"
    assert data["proxy_config"] == str(owned)
    assert data["access_log"] == "/var/log/nginx/app.json"
    assert "proxy_pass http://app;" in data["parts"]["server"]["text"]
    assert main(["proxy-snippet", "--env", "staging"]) == ExitCode.USAGE
    assert "no [deploy.staging]" in capsys.readouterr().err
