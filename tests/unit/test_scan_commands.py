"""Image assignments behind command prefixes, in command strings, over continued lines.

Every positive case sets IMAGE to ``latest`` where a shell (or a program that runs
commands) reads it; the check must find it, say where, and refuse it in prod. Every
negative case passes ``IMAGE=...`` as an argument to a program, not as a variable.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagkeeper.gate.rules import Code, policy_for
from tagkeeper.gate.scan import judge_findings, scan_text

X = "ghcr.io/acme/app:latest"

SETS_IMAGE = [
    # the cases of the issue
    f"sudo IMAGE={X} ./deploy.sh",
    f"sudo -E env IMAGE={X} ./deploy.sh",
    f"nohup env IMAGE={X} ./deploy.sh &",
    # sudo, its options and their arguments
    f"sudo -E IMAGE={X} ./deploy.sh",
    f"sudo -u deploy -E IMAGE={X} ./deploy.sh",
    f"sudo -Eu deploy IMAGE={X} ./deploy.sh",
    f"sudo -udeploy IMAGE={X} ./deploy.sh",
    f"sudo --user=deploy --preserve-env IMAGE={X} ./deploy.sh",
    f"sudo --preserve-env=PATH,HOME IMAGE={X} ./deploy.sh",
    f"sudo --user deploy -g ops IMAGE={X} ./deploy.sh",
    f"sudo -- IMAGE={X} ./deploy.sh",
    f"/usr/bin/sudo -n IMAGE={X} ./deploy.sh",
    f"PROFILE=prod sudo -E IMAGE={X} ./deploy.sh",
    f"doas -u deploy env IMAGE={X} ./deploy.sh",
    # env
    f"env -i PATH=/usr/bin IMAGE={X} ./deploy.sh",
    f"env -u HOME -C /srv IMAGE={X} ./deploy.sh",
    f"env - IMAGE={X} ./deploy.sh",
    f"env -- IMAGE={X} ./deploy.sh",
    f"/usr/bin/env --unset=HOME IMAGE={X} ./deploy.sh",
    f"env -S 'IMAGE={X} ./deploy.sh'",
    f"env --split-string='PROFILE=prod IMAGE={X} ./deploy.sh'",
    # nohup, exec, time, command, nice, timeout and the other prefixes
    f"nohup sudo IMAGE={X} ./deploy.sh > deploy.log 2>&1 &",
    f"exec env IMAGE={X} ./deploy.sh",
    f"exec -a deploy env IMAGE={X} ./deploy.sh",
    f"time IMAGE={X} ./deploy.sh",
    f"time -p env IMAGE={X} ./deploy.sh",
    f"command env IMAGE={X} ./deploy.sh",
    f"nice -n 10 env IMAGE={X} ./deploy.sh",
    f"nice -10 env IMAGE={X} ./deploy.sh",
    f"nice --adjustment=5 sudo IMAGE={X} ./deploy.sh",
    f"timeout 300 env IMAGE={X} ./deploy.sh",
    f"timeout -k 10 -s TERM 5m sudo IMAGE={X} ./deploy.sh",
    f"timeout --signal=KILL --preserve-status 5m env IMAGE={X} ./deploy.sh",
    f"stdbuf -oL env IMAGE={X} ./deploy.sh",
    f"ionice -c 3 -n 7 env IMAGE={X} ./deploy.sh",
    f"setsid -f env IMAGE={X} ./deploy.sh",
    f"chroot /srv/root env IMAGE={X} ./deploy.sh",
    f"taskset -c 0,1 env IMAGE={X} ./deploy.sh",
    f"flock -w 10 /run/deploy.lock env IMAGE={X} ./deploy.sh",
    f"flock /run/deploy.lock -c 'IMAGE={X} ./deploy.sh'",
    f"sudo nice -n 5 nohup timeout 1h env -i IMAGE={X} ./deploy.sh",
    # command lines handed over as a string
    f"bash -c 'IMAGE={X} ./deploy.sh'",
    f'sh -ec "IMAGE={X} ./deploy.sh"',
    f"sudo -u deploy bash -lc 'cd /srv && IMAGE={X} ./deploy.sh'",
    f"busybox sh -c 'IMAGE={X} ./deploy.sh'",
    f"bash +e -o pipefail -c 'IMAGE={X} ./deploy.sh'",
    f"su deploy -c 'IMAGE={X} ./deploy.sh'",
    f"su - deploy --command='IMAGE={X} ./deploy.sh'",
    f"runuser -u deploy -- sh -c 'IMAGE={X} ./deploy.sh'",
    f"ssh deploy@host IMAGE={X} ./deploy.sh",
    f"ssh -p 2222 -i ~/.ssh/key deploy@host 'IMAGE={X} ./deploy.sh'",
    f'ssh -o BatchMode=yes host "sudo -E IMAGE={X} ./deploy.sh"',
    f'eval "IMAGE={X} ./deploy.sh"',
    # arguments that are assignments, declarations, redirections
    f"make deploy IMAGE={X}",
    f"export PROFILE IMAGE={X}",
    f"declare -rx IMAGE={X}",
    f">deploy.log IMAGE={X} ./deploy.sh",
    f"2>&1 IMAGE={X} ./deploy.sh",
    f"if sudo IMAGE={X} ./deploy.sh; then echo ok; fi",
    # what runs cannot be told: fail closed
    f"$SUDO IMAGE={X} ./deploy.sh",
    f'"${{RUN[@]}}" IMAGE={X} ./deploy.sh',
    f"sudo --some-future-option IMAGE={X} ./deploy.sh",
    f"env -X IMAGE={X} ./deploy.sh",
]

PASSES_AN_ARGUMENT = [
    f"echo IMAGE={X}",
    f"docker run -e IMAGE={X} busybox",
    f"sudo docker run -e IMAGE={X} app",
    f"nohup ./deploy.sh IMAGE={X}",
    f"bash deploy.sh IMAGE={X}",
    f"grep -r IMAGE={X} .",
    f"ssh host cat IMAGE={X}",
    f"sh -c 'echo IMAGE={X}'",
    f"sudo -u deploy printf IMAGE={X}",
    f"timeout 5 ./deploy.sh IMAGE={X}",
]


@pytest.mark.parametrize("line", SETS_IMAGE)
def test_image_set_through_a_command_prefix_is_found_and_refused(line: str) -> None:
    found = scan_text(line + "\n", "deploy.sh")
    assert [(f.name, f.text) for f in found] == [("IMAGE", X)], line
    (finding,) = found
    assert finding.line == 1
    assert line[finding.column - 1 :].startswith(X), (line, finding.column)
    (verdict,) = judge_findings(found, policy_for("prod"))
    assert verdict.code is Code.LATEST


@pytest.mark.parametrize("line", PASSES_AN_ARGUMENT)
def test_image_as_an_argument_is_no_assignment(line: str) -> None:
    assert scan_text(line + "\n", "deploy.sh") == []


def test_a_command_continued_over_lines_is_read_as_one() -> None:
    text = (
        "sudo \\\n"
        "  -E \\\n"
        "  env -i \\\n"
        f"  IMAGE={X} \\\n"
        "  ./deploy.sh\n"
        "./deploy.sh \\\n"
        f"  --profile prod IMAGE={X}\n"  # an argument of deploy.sh
        f"echo done && \\\n  IMAGE={X} ./deploy.sh\n"
    )
    found = scan_text(text, "deploy.sh")
    assert [(f.line, f.column, f.text) for f in found] == [(4, 9, X), (9, 9, X)]


def test_variables_inside_command_strings_stay_unresolved_or_resolve() -> None:
    line = 'sudo -u deploy bash -c "IMAGE=ghcr.io/acme/app:$TAG ./deploy.sh"\n'
    (finding,) = scan_text(line, "deploy.sh")
    assert finding.unresolved is not None
    assert "$TAG" in finding.unresolved
    (resolved,) = scan_text(line, "deploy.sh", {"TAG": "latest"})
    assert resolved.text == X
    single = "bash -c 'IMAGE=ghcr.io/acme/app:$TAG ./deploy.sh'\n"
    (inner,) = scan_text(single, "deploy.sh", {"TAG": "v1.2.3"})
    assert inner.text == "ghcr.io/acme/app:v1.2.3"  # the inner shell expands it


def test_an_append_assignment_is_unresolved() -> None:
    (finding,) = scan_text("sudo IMAGE+=:latest ./deploy.sh\n", "deploy.sh")
    assert finding.unresolved is not None
    assert "appends" in finding.unresolved


def test_strings_nested_deeply_are_read_and_bounded() -> None:
    inner = f"IMAGE={X} ./deploy.sh"
    for _ in range(3):
        inner = "bash -c " + "'" + inner.replace("'", "'\\''") + "'"
    assert [f.text for f in scan_text(inner + "\n", "deploy.sh")] == [X]
    deep = "eval " * 200 + f"IMAGE={X} ./deploy.sh\n"
    scan_text(deep, "deploy.sh")  # no RecursionError


def test_a_shell_option_tagkeeper_does_not_know_still_reads_the_strings() -> None:
    found = scan_text(f"bash --future-flag -c 'IMAGE={X} ./deploy.sh'\n", "deploy.sh")
    assert [f.text for f in found] == [X]


# -- the class: any chain of prefixes, with any of their options, in any wrapping ----------

_PREFIX_FORMS = {
    "sudo": [
        "sudo",
        "sudo -E",
        "sudo -u deploy",
        "sudo -Eu deploy",
        "sudo --user=deploy -H",
        "sudo -g ops -n",
        "/usr/bin/sudo --preserve-env=PATH",
        "sudo --",
    ],
    "doas": ["doas", "doas -u deploy", "doas -n"],
    "env": [
        "env",
        "env -i",
        "env -u HOME",
        "env -C /srv",
        "env -",
        "env --unset=X --",
        "env A=1 B=2",
    ],
    "nohup": ["nohup"],
    "exec": ["exec", "exec -a deploy", "exec -cl"],
    "time": ["time", "time -p", "time -f %e -o t.log"],
    "command": ["command", "command -p"],
    "nice": ["nice", "nice -n 5", "nice -10", "nice --adjustment=3"],
    "timeout": ["timeout 60", "timeout -k 5 -s TERM 5m", "timeout --foreground 1h"],
    "stdbuf": ["stdbuf -oL", "stdbuf -i0 -e L"],
    "ionice": ["ionice -c 3", "ionice -c2 -n7"],
    "setsid": ["setsid", "setsid -f"],
    "chroot": ["chroot /srv", "chroot --userspec=a:b /srv"],
    "flock": ["flock /run/x.lock", "flock -w 10 -x /run/x.lock"],
    "taskset": ["taskset 0x3", "taskset -c 0,1"],
}
_PREFIX = st.sampled_from(sorted(_PREFIX_FORMS)).flatmap(
    lambda name: st.sampled_from(_PREFIX_FORMS[name])
)
_WRAPS = [
    "{}",
    "bash -c '{}'",
    "sudo -u deploy sh -ec '{}'",
    "ssh -p 22 deploy@host '{}'",
    "su deploy -c '{}'",
    "eval '{}'",
    "{} > deploy.log 2>&1 &",
    "cd /srv && {}",
    "if {}; then echo ok; fi",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_PREFIX, max_size=4),
    st.sampled_from(["", "PROFILE=prod ", "A=1 B=2 "]),
    st.sampled_from(_WRAPS),
    st.sampled_from(["", "--flag", "IMAGE=nope"]),
)
def test_any_prefix_chain_is_looked_through(
    prefixes: list[str], assignments: str, wrap: str, after: str
) -> None:
    command = " ".join([*prefixes, f"{assignments}IMAGE={X} ./deploy.sh {after}".strip()])
    line = wrap.format(command)
    found = scan_text(line + "\n", "deploy.sh")
    assert [f.text for f in found] == [X], line
    assert line[found[0].column - 1 :].startswith(X), line


@pytest.mark.parametrize(
    "text",
    [
        f"steps:\n  - run: sudo IMAGE={X} ./deploy.sh\n",
        f"steps:\n  - name: deploy\n    run: ssh deploy@host 'IMAGE={X} ./deploy.sh'\n",
        f'steps:\n  - run: "nohup env IMAGE={X} ./deploy.sh"\n',
        f"deploy:\n  script:\n    - sudo -E IMAGE={X} ./deploy.sh\n",
        f"deploy:\n  before_script: [echo]\n  script:\n    - cd /srv && env IMAGE={X} ./d.sh\n",
        f"steps:\n  - run: |\n      sudo IMAGE={X} \\\n        ./deploy.sh\n",
    ],
)
def test_commands_in_yaml_script_values_are_read_as_shell(text: str) -> None:
    found = scan_text(text, "workflow.yml")
    assert [(f.name, f.text) for f in found] == [("IMAGE", X)], text
    (finding,) = found
    line = text.splitlines()[finding.line - 1]
    assert line[finding.column - 1 :].startswith(X)


def test_other_yaml_values_are_not_read_as_shell() -> None:
    text = f"description: make deploy IMAGE={X}\nname: sudo IMAGE={X}\n"
    assert scan_text(text, "c.yml") == []
