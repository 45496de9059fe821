"""The health and smoke-check engine, against scripted services and a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.deploy.checks import (
    Masker,
    SmokeCheck,
    judge_health,
    load_smoke,
    parse_check,
    render,
)
from tagkeeper.deploy.verify import MAX_BODY, HealthPolicy, VerifyReport, verify
from tagkeeper.errors import ConfigError, ExitCode, UsageError

if TYPE_CHECKING:
    from pathlib import Path

Handler = Callable[[httpx.Request, float], httpx.Response]


@dataclass
class Clock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Service:
    """A scripted service: ``handler(request, now)`` answers; every request is kept."""

    handler: Handler
    clock: Clock
    requests: list[httpx.Request] = field(default_factory=list)
    cost: float = 0.01  # each request takes this long on the fake clock

    def client(self) -> httpx.Client:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            self.clock.now += self.cost
            return self.handler(request, self.clock.now)

        return httpx.Client(transport=httpx.MockTransport(handle))


def up(_: httpx.Request, __: float) -> httpx.Response:
    return httpx.Response(200, json={"status": "UP"})


def run(
    handler: Handler,
    policy: HealthPolicy | None = None,
    smoke: list[SmokeCheck] | None = None,
    environ: dict[str, str] | None = None,
    **kw: object,
) -> tuple[VerifyReport, Service]:
    clock = Clock()
    service = Service(handler, clock)
    rendered = render(smoke or [], environ or {})
    with service.client() as client:
        report = verify(
            "http://127.0.0.1:18520",
            policy or HealthPolicy(interval=2.0, successes=3, timeout=120.0),
            rendered.requests,
            client=client,
            clock=clock,
            sleep=clock.sleep,
            masker=rendered.masker,
            **kw,  # type: ignore[arg-type]
        )
    return report, service


# -- health ---------------------------------------------------------------------------------


def test_a_healthy_service_passes_after_three_answers_in_a_row() -> None:
    report, service = run(up)
    assert report.ok
    assert report.reason == "healthy"
    assert len(service.requests) == 3
    assert all(r.url.path == "/actuator/health" for r in service.requests)
    assert report.healthy_after == pytest.approx(0.01)
    assert report.seconds == pytest.approx(4.03)  # two intervals between three answers
    assert [c.name for c in report.checks] == ["health /actuator/health"]
    assert report.checks[0].attempts == 3


def test_a_service_that_comes_up_late_passes_once_it_answers() -> None:
    def late(request: httpx.Request, now: float) -> httpx.Response:
        if now < 7:
            raise httpx.ConnectError("refused", request=request)
        return up(request, now)

    report, _ = run(late)
    assert report.ok
    assert report.healthy_after == pytest.approx(8.05)


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (503, {"status": "DOWN"}, "answered 503 (status DOWN)"),
        (200, {"status": "UNKNOWN"}, "answered 200 with status UNKNOWN, not UP"),
        (200, {"status": "OUT_OF_SERVICE"}, "not UP"),
        (500, "boom", "answered 500"),
    ],
)
def test_an_unhealthy_service_fails_after_the_timeout_saying_why(
    status: int, body: object, words: str
) -> None:
    def answer(_: httpx.Request, __: float) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    report, service = run(answer, HealthPolicy(interval=2.0, successes=3, timeout=30.0))
    assert not report.ok
    assert report.reason.startswith("not healthy within 30s: /actuator/health ")
    assert words in report.reason
    assert 30.0 <= report.seconds < 30.5
    assert len(service.requests) == 16  # every 2 s from 0 to 30
    assert not report.checks[0].ok


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, text="OK"),
        httpx.Response(204),
        httpx.Response(200, json={"groups": ["liveness"]}),
        httpx.Response(200, json=["UP"]),
        httpx.Response(299, json={"status": "UP"}),
    ],
)
def test_2xx_without_a_status_field_is_healthy(response: httpx.Response) -> None:
    report, _ = run(lambda _r, _n: response)
    assert report.ok


def test_flapping_resets_the_count_of_answers_in_a_row() -> None:
    answers = iter([200, 200, 503, 200, 200, 200])

    def flap(_: httpx.Request, __: float) -> httpx.Response:
        code = next(answers)
        return httpx.Response(code, json={"status": "UP" if code == 200 else "DOWN"})

    report, service = run(flap)
    assert report.ok
    assert len(service.requests) == 6


def test_every_health_path_must_be_healthy_in_the_same_round() -> None:
    def two(request: httpx.Request, __: float) -> httpx.Response:
        if request.url.path.endswith("liveness"):
            return httpx.Response(200, json={"status": "UP"})
        return httpx.Response(503, json={"status": "OUT_OF_SERVICE"})

    policy = HealthPolicy(
        paths=("/actuator/health/liveness", "/actuator/health/readiness"),
        interval=1.0,
        successes=2,
        timeout=5.0,
    )
    report, _ = run(two, policy)
    assert not report.ok
    assert "/actuator/health/readiness answered 503" in report.reason
    assert [c.name for c in report.checks] == [
        "health /actuator/health/liveness",
        "health /actuator/health/readiness",
    ]


def test_a_container_that_exits_fails_at_once_with_its_log() -> None:
    clock_box: list[Clock] = []

    def down(_: httpx.Request, __: float) -> httpx.Response:
        return httpx.Response(503, json={"status": "DOWN"})

    def alive() -> str | None:
        return "exited with code 1" if clock_box[0].now > 5 else None

    def logs() -> str:
        return "Starting\n\x1b[31mAPPLICATION FAILED TO START\x1b[0m\npassword=hunter2secret\n"

    clock = Clock()
    clock_box.append(clock)
    service = Service(down, clock)
    with service.client() as client:
        report = verify(
            "http://127.0.0.1:1",
            HealthPolicy(timeout=120.0),
            client=client,
            clock=clock,
            sleep=clock.sleep,
            alive=alive,
            log_tail=logs,
            masker=Masker(["hunter2secret"]),
        )
    assert not report.ok
    assert report.reason == "the container exited with code 1"
    assert report.seconds < 10  # not the 120 s timeout
    assert report.log_tail is not None
    assert report.log_tail[1] == "?[31mAPPLICATION FAILED TO START?[0m"
    assert report.log_tail[2] == "password=***"


def test_timeouts_and_refusals_are_reasons_not_crashes() -> None:
    def hang(request: httpx.Request, __: float) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    report, _ = run(hang, HealthPolicy(interval=1.0, successes=1, timeout=3.0))
    assert not report.ok
    assert "no answer within" in report.reason


def test_after_a_switch_the_first_healthy_answer_is_seen_within_a_tenth_of_a_second() -> None:
    def at(request: httpx.Request, now: float) -> httpx.Response:
        if now < 0.35:
            raise httpx.ConnectError("refused", request=request)
        return up(request, now)

    report, _ = run(at, fast_until_healthy=True)
    assert report.ok
    assert report.healthy_after is not None
    assert 0.35 <= report.healthy_after < 0.5
    slow, _ = run(at)
    assert slow.healthy_after is not None
    assert slow.healthy_after >= 2.0


def test_answers_are_read_up_to_a_bound() -> None:
    huge = b'{"status": "UP"' + b" " * (10 * MAX_BODY) + b"}"
    report, _ = run(lambda _r, _n: httpx.Response(200, content=huge))
    assert report.ok  # cut, not JSON any more, still a 2xx: healthy by status alone


# -- smoke ----------------------------------------------------------------------------------


def _check(**kw: object) -> SmokeCheck:
    table = {"path": "/api/x", **{k.replace("_", "-"): v for k, v in kw.items()}}
    return parse_check(table, "test")


def api(routes: dict[str, httpx.Response]) -> Handler:
    def handle(request: httpx.Request, now: float) -> httpx.Response:
        if request.url.path == "/actuator/health":
            return up(request, now)
        return routes.get(request.url.path, httpx.Response(404))

    return handle


def test_smoke_checks_run_after_health_and_each_is_reported() -> None:
    routes = {
        "/api/stats": httpx.Response(200, json={"code": 200, "data": {"users": 42, "tags": ["a"]}}),
        "/api/plans": httpx.Response(200, json=[]),
    }
    checks = [
        _check(path="/api/stats", name="stats", expect_json={"data.users": 42, "data.tags.0": "a"}),
        _check(path="/api/plans", expect_status=[200, 204], expect_body="[]"),
    ]
    report, service = run(api(routes), smoke=checks)
    assert report.ok, report.reason
    assert report.reason == "healthy, 2 smoke checks passed"
    assert [c.name for c in report.checks] == ["health /actuator/health", "stats", "GET /api/plans"]
    paths = [r.url.path for r in service.requests]
    assert paths[:3] == ["/actuator/health"] * 3
    assert paths[3:] == ["/api/stats", "/api/plans"]


@pytest.mark.parametrize(
    ("check", "response", "words"),
    [
        (_check(), httpx.Response(500, text="boom"), "answered 500, expected 2xx; body: 'boom'"),
        (_check(expect_status=201), httpx.Response(200), "answered 200, expected 201"),
        (_check(expect_body="users"), httpx.Response(200, text="{}"), "does not contain 'users'"),
        (_check(expect_json={"a.b": 1}), httpx.Response(200, text="<html>"), "not JSON"),
        (_check(expect_json={"a.b": 1}), httpx.Response(200, json={"a": {}}), "no 'a.b'"),
        (_check(expect_json={"a": 1}), httpx.Response(200, json={"a": 2}), "a is 2, expected 1"),
        (_check(expect_json={"a": 1}), httpx.Response(200, json={"a": True}), "a is true"),
        (_check(expect_json={"a": True}), httpx.Response(200, json={"a": 1}), "expected true"),
        (_check(expect_json={"a.1": "y"}), httpx.Response(200, json={"a": ["x"]}), "no 'a.1'"),
    ],
)
def test_a_failed_smoke_check_fails_verify_and_says_why(
    check: SmokeCheck, response: httpx.Response, words: str
) -> None:
    report, _ = run(api({"/api/x": response}), smoke=[check])
    assert not report.ok
    assert report.reason.startswith(f"smoke check {check.name!r} failed: ")
    assert words in report.reason


def test_every_smoke_check_runs_even_after_one_fails() -> None:
    checks = [_check(path="/api/a", name="a"), _check(path="/api/b", name="b")]
    report, service = run(api({"/api/b": httpx.Response(200)}), smoke=checks)
    assert report.reason == "smoke check 'a' failed: answered 404, expected 2xx; body: ''"
    assert [c.ok for c in report.checks] == [True, False, True]
    assert service.requests[-1].url.path == "/api/b"


def test_variables_reach_the_service_and_are_masked_in_every_output() -> None:
    token = "s3cr3t-token-value"
    seen: list[httpx.Request] = []

    def echo(request: httpx.Request, now: float) -> httpx.Response:
        if request.url.path == "/actuator/health":
            return up(request, now)
        seen.append(request)
        return httpx.Response(401, text=f"bad token {request.headers['authorization']}")

    check = _check(
        path="/api/login",
        method="post",
        headers={"Authorization": "Bearer ${TOKEN}"},
        body='{"password": "${TOKEN}"}',
        expect_body=token,
    )
    report, _ = run(echo, smoke=[check], environ={"TOKEN": token})
    assert seen[0].headers["authorization"] == f"Bearer {token}"
    assert json.loads(seen[0].content) == {"password": token}
    assert seen[0].method == "POST"
    assert not report.ok
    text = json.dumps(report.as_dict())
    assert token not in text
    assert "***" in report.reason


def test_an_unset_variable_is_bad_input_before_anything_runs() -> None:
    check = _check(headers={"X-Key": "${NOPE}"})
    with pytest.raises(UsageError, match=r"uses \$\{NOPE\}, which is not set") as info:
        render([check], {})
    assert info.value.exit_code is ExitCode.USAGE


# -- the smoke file -------------------------------------------------------------------------


def test_a_smoke_file_is_read_into_checks(tmp_path: Path) -> None:
    path = tmp_path / "smoke.toml"
    path.write_text(
        '[[check]]\npath = "/api/public/stats/users"\nexpect-json = { code = 200 }\n\n'
        '[[check]]\nname = "login"\npath = "/api/auth/login"\nmethod = "POST"\n'
        'headers = { Content-Type = "application/json" }\nbody = \'{"u": "${USER}"}\'\n'
        'expect-status = [200, 201]\ntimeout = "3s"\n',
        encoding="utf-8",
    )
    first, second = load_smoke(path)
    assert first.name == "GET /api/public/stats/users"
    assert first.expect_json == (("code", 200),)
    assert second.method == "POST"
    assert second.expect_status == (200, 201)
    assert second.timeout == 3.0
    assert second.variables() == {"USER"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[check]]\npath = "/a"\nexpect_status = 200\n', "unknown key 'expect_status'"),
        ('[[check]]\npath = "a"\n', "key 'path'"),
        ('[[check]]\nname = "x"\n', "key 'path'"),
        ('[[check]]\npath = "/a"\nmethod = "FETCH"\n', "key 'method'"),
        ('[[check]]\npath = "/a"\nexpect-status = 99\n', "key 'expect-status'"),
        ('[[check]]\npath = "/a"\nexpect-status = true\n', "key 'expect-status'"),
        ('[[check]]\npath = "/a"\ntimeout = 5\n', "key 'timeout'"),
        ('[[check]]\npath = "/a"\ntimeout = "0s"\n', "key 'timeout'"),
        ('[[check]]\npath = "/a"\nheaders = { "X" = "a\\nb" }\n', "key 'headers'"),
        ('[[check]]\npath = "/a"\nheaders = { "X Y" = "a" }\n', "key 'headers'"),
        ('[[check]]\npath = "/a"\nexpect-json = { "a..b" = 1 }\n', "key 'expect-json'"),
        ('[[check]]\npath = "/a"\n[[check]]\npath = "/a"\n', "two checks are named"),
        ('check = "x"\n', "[[check]] tables"),
        ("[checks]\n", "unknown table or key 'checks'"),
        ("[[check]\n", "not valid TOML"),
    ],
)
def test_a_bad_smoke_file_is_a_configuration_error(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "smoke.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_smoke(path)
    assert str(path) in info.value.message
    assert words in info.value.diagnostics()


def test_a_missing_smoke_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such smoke check file"):
        load_smoke(tmp_path / "nope.toml")


# -- the health rule ------------------------------------------------------------------------


@given(
    status=st.integers(100, 599),
    reported=st.one_of(
        st.none(), st.sampled_from(["UP", "DOWN", "UNKNOWN", "up", ""]), st.integers()
    ),
)
def test_healthy_means_2xx_and_status_up_when_there_is_one(status: int, reported: object) -> None:
    body = json.dumps({} if reported is None else {"status": reported}).encode()
    ok, _ = judge_health(status, body)
    assert ok == (200 <= status <= 299 and reported in (None, "UP"))


@given(
    answers=st.lists(st.booleans(), min_size=1, max_size=30),
    successes=st.integers(1, 5),
)
def test_verify_passes_exactly_when_enough_healthy_answers_come_in_a_row(
    answers: list[bool], successes: int
) -> None:
    asked: list[int] = []

    def scripted(_: httpx.Request, __: float) -> httpx.Response:
        index = len(asked)
        asked.append(index)
        healthy = index < len(answers) and answers[index]
        return httpx.Response(200 if healthy else 503, json={"status": "UP" if healthy else "DOWN"})

    clock = Clock()
    service = Service(scripted, clock, cost=0.0)
    policy = HealthPolicy(interval=1.0, successes=successes, timeout=len(answers) - 0.5)
    with service.client() as client:
        report = verify("http://127.0.0.1:1", policy, client=client, clock=clock, sleep=clock.sleep)
    run = best = 0
    for healthy in [*answers, False]:
        run = run + 1 if healthy else 0
        best = max(best, run)
    assert report.ok == (best >= successes)
    if report.ok:
        # it stopped asking as soon as the run was long enough
        first = next(
            i
            for i in range(len(answers))
            if all(answers[max(0, i - successes + 1) : i + 1]) and i + 1 >= successes
        )
        assert len(asked) == first + 1
    else:
        assert report.seconds >= policy.timeout
