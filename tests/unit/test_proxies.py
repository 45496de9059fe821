"""Proxies: render and read back, never all zero, apply atomically, restore on failure."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagkeeper.deploy.proxies.base import TEMP_SUFFIX, Timing, Unreadable, write_atomic
from tagkeeper.deploy.proxies.model import (
    AllZeroWeights,
    ProxyEvent,
    ProxySwitchFailed,
    Slot,
    Weights,
)
from tagkeeper.deploy.proxies.nginx import NginxProxy, nginx_commands, probe_variable
from tagkeeper.deploy.proxies.traefik import TraefikProxy, parse_yaml_subset
from tagkeeper.errors import ExitCode, UsageError
from tests.unit.proxyfakes import SLOTS, FakeClock, FakeNginx, FakeTraefik

NAMES = [s.name for s in SLOTS]
BLUE = Weights.all_to("blue", NAMES)
GREEN = Weights.all_to("green", NAMES)
GEN = "0123456789ab"


def nginx_proxy(
    path: Path, fake: FakeNginx | None = None, **kw: object
) -> tuple[NginxProxy, FakeClock]:
    clock = FakeClock()
    fake = fake or FakeNginx(path)
    proxy = NginxProxy(
        path,
        SLOTS,
        "app",
        client=httpx.Client(transport=fake.transport()),
        probe_url="http://127.0.0.1:8080/actuator/health",
        runner=fake.runner,
        clock=clock,
        sleep=clock.sleep,
        **kw,  # type: ignore[arg-type]
    )
    return proxy, clock


def traefik_proxy(path: Path, fake: FakeTraefik) -> TraefikProxy:
    clock = FakeClock()
    return TraefikProxy(
        path,
        SLOTS,
        "app",
        client=httpx.Client(transport=fake.transport()),
        api_url="http://127.0.0.1:8081",
        probe_url="http://127.0.0.1:8080/",
        access_log=fake.access_log,
        clock=clock,
        sleep=clock.sleep,
    )


weights_st = st.integers(0, 100).map(lambda n: Weights.of({"blue": n, "green": 100 - n}))


# -- weights ----------------------------------------------------------------------------


def test_all_zero_weights_are_refused() -> None:
    with pytest.raises(AllZeroWeights) as caught:
        Weights.of({"blue": 0, "green": 0})
    assert caught.value.exit_code == ExitCode.USAGE
    assert "nowhere" in caught.value.message


@pytest.mark.parametrize("text", ["90", "90,10,0", "a,b", "-5,105", "90,5", ""])
def test_bad_weights_say_what_is_allowed(text: str) -> None:
    with pytest.raises(UsageError):
        Weights.parse(text, NAMES)


def test_weights_parse_in_slot_order() -> None:
    assert Weights.parse("90, 10", NAMES).as_dict() == {"blue": 90, "green": 10}
    assert Weights.canary("green", "blue", 5, NAMES).as_dict() == {"blue": 95, "green": 5}


def test_slots_are_checked() -> None:
    with pytest.raises(UsageError):
        Slot("Blue!", "127.0.0.1", 1)
    with pytest.raises(UsageError):
        Slot("blue", "127.0.0.1", 70000)
    with pytest.raises(UsageError, match="same address"):
        NginxProxy(Path("x"), [SLOTS[0], Slot("green", "127.0.0.1", 8520)], "app",
                   client=httpx.Client(), probe_url="http://127.0.0.1/")


# -- nginx: render and read back ----------------------------------------------------------


def test_nginx_render_uses_down_never_weight_zero(tmp_path: Path) -> None:
    proxy, _ = nginx_proxy(tmp_path / "app.conf")
    text = proxy.render(BLUE, GEN)
    assert "server 127.0.0.1:8520 weight=100;" in text
    assert "server 127.0.0.1:8521 down;" in text
    assert "weight=0" not in text
    assert f"${probe_variable('app')}" in text
    assert f'default "$upstream_addr g={GEN}";' in text


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weights=weights_st)
def test_nginx_reads_back_what_it_renders(tmp_path: Path, weights: Weights) -> None:
    proxy, _ = nginx_proxy(tmp_path / "app.conf")
    text = proxy.render(weights, GEN)
    read = proxy.read_text(text)
    assert read.weights == weights
    assert read.generation == GEN
    assert read.trusted
    assert text.count(" down;") < len(SLOTS)  # never every server down


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    proxy, _ = nginx_proxy(tmp_path / "app.conf")
    read = proxy.read()
    assert not read.exists
    assert read.weights is None
    assert not read.trusted


def test_a_hand_edit_is_reported_with_what_nginx_loads(tmp_path: Path) -> None:
    proxy, _ = nginx_proxy(tmp_path / "app.conf")
    text = proxy.render(BLUE, GEN).replace("weight=100;", "weight=3;").replace(
        "8521 down;", "8521 weight=1;"
    )
    read = proxy.read_text(text)
    assert read.weights == Weights.of({"blue": 75, "green": 25})
    assert read.raw_weights == (("blue", 3), ("green", 1))
    assert not read.trusted
    assert any("edited by hand" in p for p in read.problems)


def test_every_server_down_is_reported_never_trusted(tmp_path: Path) -> None:
    proxy, _ = nginx_proxy(tmp_path / "app.conf")
    text = proxy.render(BLUE, GEN).replace("weight=100;", "down;")
    read = proxy.read_text(text)
    assert read.weights is None
    assert any("nowhere" in p for p in read.problems)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda t: t.replace("upstream app {", "upstream other {"), "named 'other'"),
        (lambda t: t.replace("}\nmap", "\nmap"), "upstream blocks"),
        (lambda t: t.replace("8521 down;", "8521 weight=zero;"), "invalid"),
        (lambda t: t.replace("8521 down;", "8521 down;\n    server 10.1.1.1:80;"), "no slot"),
        (lambda t: t.replace("map $http", "# map $http"), "probe map"),
        (lambda t: "\x00\x01 garbage", "corrupt"),
    ],
)
def test_corrupt_or_foreign_files_are_reported(tmp_path: Path, edit: object, problem: str) -> None:
    proxy, _ = nginx_proxy(tmp_path / "app.conf")
    text = edit(proxy.render(BLUE, GEN))  # type: ignore[operator]
    read = proxy.read_text(text)
    assert not read.trusted
    assert any(problem in p for p in read.problems), read.problems


def test_default_nginx_commands() -> None:
    test, reload = nginx_commands(prefix="/srv/nginx/", conf="/srv/nginx/nginx.conf")
    assert test == ["nginx", "-p", "/srv/nginx/", "-c", "/srv/nginx/nginx.conf", "-t", "-q"]
    assert reload[-2:] == ["-s", "reload"]
    assert nginx_commands()[1] == ["nginx", "-s", "reload"]


# -- nginx: apply ----------------------------------------------------------------------------


def start(path: Path, weights: Weights = BLUE, **fake_kw: object) -> FakeNginx:
    proxy, _ = nginx_proxy(path)
    write_atomic(path, proxy.render(weights, GEN).encode())
    fake = FakeNginx(path, **fake_kw)  # type: ignore[arg-type]
    fake.start()
    return fake


def test_apply_switches_and_confirms_through_the_proxy(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, reload_lag=3)
    proxy, _ = nginx_proxy(path, fake)
    events: list[ProxyEvent] = []
    report = proxy.apply(GREEN, on_event=events.append)
    assert [e.phase for e in events] == ["write", "test", "reload", "confirm"]
    assert report.previous == BLUE
    assert report.answered_by == ("green",)
    assert report.probes >= 5 + 3  # the old workers' answers did not count
    assert fake.generation == report.generation
    assert proxy.read().weights == GREEN
    assert proxy.read().trusted
    assert [c[-1] for c in fake.commands] == ["-q", "reload"]


def test_apply_leaves_no_temporary_file_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path)
    path.chmod(0o640)
    proxy, _ = nginx_proxy(path, fake)
    proxy.apply(Weights.of({"blue": 90, "green": 10}))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.conf"]
    assert path.stat().st_mode & 0o777 == 0o640
    assert not TEMP_SUFFIX.endswith((".conf", ".yml", ".yaml", ".toml"))


def test_a_failing_test_restores_the_file_and_never_reloads(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, fail_test='nginx: [emerg] unknown directive "proxy_passs" in /etc/x:3')
    before = path.read_bytes()
    proxy, _ = nginx_proxy(path, fake)
    events: list[ProxyEvent] = []
    with pytest.raises(ProxySwitchFailed) as caught:
        proxy.apply(GREEN, on_event=events.append)
    assert caught.value.exit_code == ExitCode.VERIFY
    assert caught.value.phase == "test"
    assert caught.value.restored
    assert "proxy_passs" in caught.value.message
    assert "restored" in caught.value.message
    assert path.read_bytes() == before
    assert not any("reload" in c for c in fake.commands)
    assert fake.weights == {"127.0.0.1:8520": 100, "127.0.0.1:8521": 0}
    assert events[-1].phase == "restore"


def test_a_failing_reload_restores_and_reloads_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, fail_reload=True)
    before = path.read_bytes()
    proxy, _ = nginx_proxy(path, fake)
    with pytest.raises(ProxySwitchFailed) as caught:
        proxy.apply(GREEN)
    assert caught.value.phase == "reload"
    assert path.read_bytes() == before
    assert sum("reload" in c for c in fake.commands) == 2  # the switch, then the restore
    assert not caught.value.restored  # the restore's reload failed as well, and it says so
    assert "reloading it failed" in caught.value.message


def test_a_switch_that_never_shows_is_undone(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, ignore_reload=True)
    before = path.read_bytes()
    proxy, clock = nginx_proxy(path, fake, timing=Timing(confirm_timeout=3))
    with pytest.raises(ProxySwitchFailed) as caught:
        proxy.apply(GREEN)
    assert caught.value.phase == "confirm"
    assert caught.value.restored
    assert "configuration before" in caught.value.message
    assert path.read_bytes() == before
    assert clock.now - 1000.0 >= 3  # it waited its bound, no longer
    assert clock.now - 1000.0 < 3.5


def test_a_foreign_header_is_not_trusted_nor_printed_raw(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, header="127.0.0.1:8521 g=zzz\x1b[31m")
    proxy, _ = nginx_proxy(path, fake, timing=Timing(confirm_timeout=1))
    with pytest.raises(ProxySwitchFailed) as caught:
        proxy.apply(GREEN)
    assert "\x1b" not in caught.value.message
    assert "unexpected X-Tagkeeper-Upstream" in caught.value.message


def test_a_missing_probe_header_says_to_add_the_snippet(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, header=None)
    proxy, _ = nginx_proxy(path, fake)
    proxy.client = httpx.Client(transport=httpx.MockTransport(lambda _r: httpx.Response(200)))
    state = proxy.live()
    assert state.error is not None
    assert "proxy-snippet" in state.error


def test_an_interrupted_apply_restores_then_stops(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path, interrupt_on="reload")
    before = path.read_bytes()
    proxy, _ = nginx_proxy(path, fake)
    with pytest.raises(KeyboardInterrupt):
        proxy.apply(GREEN)
    assert path.read_bytes() == before


def test_all_zero_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "app.conf"
    fake = start(path)
    before = path.read_bytes()
    proxy, _ = nginx_proxy(path, fake)
    with pytest.raises(AllZeroWeights):
        proxy.apply(Weights.of({"blue": 0, "green": 0}))
    with pytest.raises(UsageError):
        proxy.apply(Weights.of({"blue": 100}))  # a slot without a weight
    assert path.read_bytes() == before
    assert fake.commands == []


def test_an_unwritable_place_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "app.conf"
    fake = FakeNginx(path)
    proxy, _ = nginx_proxy(path, fake)
    with pytest.raises(ProxySwitchFailed, match="cannot be written") as caught:
        proxy.apply(GREEN)
    assert caught.value.phase == "write"
    assert fake.commands == []
    assert list(tmp_path.iterdir()) == []


def test_a_kill_after_the_rename_leaves_a_whole_file_never_all_zero(tmp_path: Path) -> None:
    """Killed between the rename and the reload: the file holds the new weights whole."""
    path = tmp_path / "app.conf"
    fake = start(path)
    proxy, _ = nginx_proxy(path, fake)
    write_atomic(path, proxy.render(GREEN, "aaaaaaaaaaaa").encode())  # what apply wrote
    read = proxy.read()
    assert read.weights == GREEN
    assert read.trusted
    live = proxy.live()  # nginx still runs the file before
    assert live.generation == GEN
    assert live.generation != read.generation
    assert live.slots == ("blue",)


# -- Traefik ----------------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(weights=weights_st, toml=st.booleans())
def test_traefik_reads_back_what_it_renders(tmp_path: Path, weights: Weights, toml: bool) -> None:
    path = tmp_path / ("app.toml" if toml else "app.yml")
    proxy = traefik_proxy(path, FakeTraefik(path, tmp_path / "access.log"))
    text = proxy.render(weights, GEN)
    read = proxy.read_text(text)
    assert read.weights == weights
    assert read.trusted
    assert read.generation == GEN
    assert "weight: 0" not in text
    assert "weight = 0" not in text


def test_traefik_yaml_is_the_documented_form(tmp_path: Path) -> None:
    path = tmp_path / "app.yml"
    proxy = traefik_proxy(path, FakeTraefik(path, tmp_path / "access.log"))
    body = proxy.render(Weights.of({"blue": 90, "green": 10}), GEN).split("\n", 4)[4]
    assert parse_yaml_subset(body) == {
        "http": {
            "services": {
                "app": {
                    "weighted": {
                        "services": [
                            {"name": "app-blue", "weight": 90},
                            {"name": "app-green", "weight": 10},
                        ]
                    }
                },
                "app-blue": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:8520"}]}},
                "app-green": {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:8521"}]}},
            }
        }
    }


@pytest.mark.parametrize(
    "text",
    ["a: [1, 2]", "a: {b: 1}", "a: &x 1", "a: |\n  x", "a:\n\t b: 1", "a: 1\na: 2", "  a: 1\nb: 2"],
)
def test_yaml_that_cannot_be_read_for_sure_is_refused(text: str) -> None:
    with pytest.raises(Unreadable):
        parse_yaml_subset(text)


def test_traefik_hand_edit_with_a_zero_child_is_read_as_traefik_would(tmp_path: Path) -> None:
    path = tmp_path / "app.yml"
    proxy = traefik_proxy(path, FakeTraefik(path, tmp_path / "access.log"))
    text = proxy.render(BLUE, GEN).replace("weight: 100", "weight: 0")
    read = proxy.read_text(text)
    assert read.weights is None
    assert any("nowhere" in p for p in read.problems)


def test_traefik_apply_waits_for_the_api_then_probes_the_access_log(tmp_path: Path) -> None:
    path = tmp_path / "app.yml"
    fake = FakeTraefik(path, tmp_path / "access.log", lag=3)
    proxy = traefik_proxy(path, fake)
    write_atomic(path, proxy.render(BLUE, GEN).encode())
    events: list[ProxyEvent] = []
    report = proxy.apply(GREEN, on_event=events.append)
    assert [e.phase for e in events] == ["write", "confirm"]  # Traefik reloads by itself
    assert report.answered_by == ("green",)
    assert proxy.live().weights == GREEN


def test_traefik_probe_served_by_a_zero_slot_fails_and_restores(tmp_path: Path) -> None:
    path = tmp_path / "app.yml"
    fake = FakeTraefik(path, tmp_path / "access.log", lag=1, route_to="127.0.0.1:8520")
    proxy = traefik_proxy(path, fake)
    write_atomic(path, proxy.render(BLUE, GEN).encode())
    before = path.read_bytes()
    with pytest.raises(ProxySwitchFailed) as caught:
        proxy.apply(GREEN)
    assert caught.value.phase == "confirm"
    assert "8520" in caught.value.message
    assert path.read_bytes() == before


def test_drift_names_an_unloaded_file_and_agrees_when_in_sync(tmp_path: Path) -> None:
    from tagkeeper.deploy.proxies.model import LiveState, drift

    path = tmp_path / "app.conf"
    fake = start(path)
    proxy, _ = nginx_proxy(path, fake)
    assert drift(proxy.read(), proxy.live()) == ()
    write_atomic(path, proxy.render(GREEN, "bbbbbbbbbbbb").encode())  # renamed, not reloaded
    notes = drift(proxy.read(), proxy.live())
    assert len(notes) == 1
    assert "written but not loaded" in notes[0]
    assert drift(proxy.read(), LiveState(weights=BLUE))[0].startswith("the proxy runs blue=100")
    assert "could not be asked" in drift(proxy.read(), LiveState(error="refused"))[0]


@pytest.mark.parametrize(
    ("children", "expected", "error"),
    [
        ([("app-blue", 3), ("app-green", 1)], {"blue": 75, "green": 25}, None),
        ([("app-blue", 0), ("app-green", 0)], None, "503"),
        ([("app-red", 100)], None, "no slot"),
    ],
)
def test_traefik_live_weights_are_read_as_traefik_runs_them(
    tmp_path: Path, children: list[tuple[str, int]], expected: dict[str, int] | None,
    error: str | None,
) -> None:
    path = tmp_path / "app.yml"
    fake = FakeTraefik(path, tmp_path / "access.log")
    proxy = traefik_proxy(path, fake)
    write_atomic(path, proxy.render(BLUE, GEN).encode())
    fake.lag = 0
    fake._seen = path.read_text()
    fake.loaded = children
    state = proxy.live()
    if expected is None:
        assert state.weights is None
        assert error is not None
        assert state.error is not None
        assert error in state.error
    else:
        assert state.weights is not None
        assert state.weights.as_dict() == expected


def test_traefik_stages_its_temporary_file_outside_the_watched_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "dynamic"
    watched.mkdir()
    path = watched / "app.yml"
    proxy = traefik_proxy(path, FakeTraefik(path, tmp_path / "access.log"))
    seen: list[Path] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    proxy.write(b"one")
    assert seen[-1].parent == tmp_path  # staged beside the directory, renamed in
    assert seen[-1].name == ".app.yml" + TEMP_SUFFIX

    def cross_device(src: str | Path, dst: str | Path) -> None:
        if Path(src).parent != Path(dst).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        spy(src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    proxy.write(b"two")  # the parent is another filesystem: inside, under an ignored name
    assert seen[-1].parent == watched
    assert path.read_bytes() == b"two"
    assert sorted(p.name for p in watched.iterdir()) == ["app.yml"]
    assert not (tmp_path / (".app.yml" + TEMP_SUFFIX)).exists()


def test_nginx_confirms_only_after_new_answers_for_the_settle_time(tmp_path: Path) -> None:
    """Old workers accept for ~100 ms after a reload: five quick answers are not enough."""
    path = tmp_path / "app.conf"
    fake = start(path, reload_lag=2)
    proxy, clock = nginx_proxy(path, fake)
    assert proxy.timing.confirm_settle == pytest.approx(0.3)
    began = clock.now
    report = proxy.apply(GREEN)
    assert clock.now - began >= 0.3
    assert report.probes >= 2 + 15  # the old workers' answers, then 0.3 s of probes
