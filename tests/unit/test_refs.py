"""Image reference grammar.

The accept/reject decisions below were checked against the Docker CLI's own parser
(``docker tag <missing-image> REF`` parses REF before it asks the engine anything):
tagkeeper must read a reference the way ``docker`` does, or it would judge a different
image than the one a deploy script runs.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tagkeeper.errors import UsageError
from tagkeeper.refs import (
    ImageRef,
    is_valid_tag,
    lowercase_repository,
    parse_reference,
    require_valid_tag,
)

HEX64 = "0123456789abcdef" * 4
SHA = f"sha256:{HEX64}"


@pytest.mark.parametrize(
    ("text", "host", "path", "tag", "digest"),
    [
        ("app", None, "app", None, None),
        ("app:v1.2.3", None, "app", "v1.2.3", None),
        ("owner/app:dev-abc1234", None, "owner/app", "dev-abc1234", None),
        ("ghcr.io/owner/app:v1.2.3", "ghcr.io", "owner/app", "v1.2.3", None),
        # the colon is the port, not a tag
        ("host:5000/app", "host:5000", "app", None, None),
        ("registry:5000/team/app:v2", "registry:5000", "team/app", "v2", None),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app:1.0.0", "localhost:5000", "app", "1.0.0", None),
        # a lone name with a colon is a name and a tag (docker reads it the same way)
        ("localhost:5000", None, "localhost", "5000", None),
        ("[::1]:5000/app", "[::1]:5000", "app", None, None),
        ("[::1]/app:v1", "[::1]", "app", "v1", None),
        ("[2001:db8::1]:443/o/app:v1", "[2001:db8::1]:443", "o/app", "v1", None),
        # an upper-case first component is a host, as docker reads it
        ("GHCR.IO/owner/app:v1", "GHCR.IO", "owner/app", "v1", None),
        ("App/x", "App", "x", None, None),
        ("a:1/b:2", "a:1", "b", "2", None),
        (f"app:tag@{SHA}", None, "app", "tag", SHA),
        (f"ghcr.io/o/r@{SHA}", "ghcr.io", "o/r", None, SHA),
        (f"ghcr.io/o/r:latest@{SHA}", "ghcr.io", "o/r", "latest", SHA),
        (f"app@sha384:{HEX64}{HEX64[:32]}", None, "app", None, f"sha384:{HEX64}{HEX64[:32]}"),
        (f"app@sha512:{HEX64 * 2}", None, "app", None, f"sha512:{HEX64 * 2}"),
        ("a/b_c/d__e/f-g/h--i/j.k", None, "a/b_c/d__e/f-g/h--i/j.k", None, None),
        ("r:_underscore-first", None, "r", "_underscore-first", None),
        ("r:UPPER.Case", None, "r", "UPPER.Case", None),
        # a 64-hex tag on the name sha256 is a name and a tag, not a digest
        (f"sha256:{HEX64}", None, "sha256", HEX64, None),
        (f"a/{HEX64}", None, f"a/{HEX64}", None, None),
        # '_' cannot be in a host name, so docker reads the whole as a path
        ("ho_st.io/app:v1", None, "ho_st.io/app", "v1", None),
    ],
)
def test_parses_like_docker(
    text: str, host: str | None, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert ref == ImageRef(host, path, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" app:v1", "whitespace"),
        ("app:v1\n", "whitespace"),
        ("app :v1", "not a valid"),
        ("ghcr.io/Owner/app", "must be lowercase"),
        ("ghcr.io/owner/App:v1", "must be lowercase"),
        ("a/B", "must be lowercase"),
        ("Foo", "must be lowercase"),
        ("app@sha256:abc", "not a digest"),
        (f"app@sha256:{HEX64.upper()}", "64 lowercase hex"),
        (f"app@sha256:{HEX64}0", "64 lowercase hex"),
        ("app@md5:0123456789abcdef0123456789abcdef", "not supported"),
        ("app@sha512:0123", "not a digest"),
        (f"app@SHA256:{HEX64}", "not a digest"),
        ("app@", "not a digest"),
        ("app:tag@", "not a digest"),
        ("app:", "not a valid tag"),
        (":tag", "not a valid repository path"),
        ("app:.x", "not a valid tag"),
        ("app:-x", "not a valid tag"),
        ("app:" + "x" * 129, "not a valid tag"),
        ("app:v1:v2", "not a valid repository path"),
        ("a//b", "not a valid repository path"),
        ("x/", "not a valid repository path"),
        ("a/b___c", "not a valid repository path"),
        ("a/b.-c", "not a valid repository path"),
        ("a/b..c", "not a valid repository path"),
        ("a/b-", "not a valid repository path"),
        ("x.y/_a", "not a valid repository path"),
        ("host:port/app", "not a valid registry host"),
        ("ghcr.io:/o/r", "not a valid registry host"),
        ("host-.io/app", "not a valid registry host"),
        ("-host.io/app", "not a valid registry host"),
        ("[fe80::1%eth0]:5000/app", "not a valid registry host"),
        ("[::ffff:1.2.3.4]:5000/app", "not a valid registry host"),
        ("[::1]", "not a valid"),
        ("[::1]:5000", "not a valid repository path"),
        (HEX64, "image id"),
        ("a/" + "b" * 254, "255 characters"),
        ("ghcr.io/o/r:v1\u0661", "not a valid tag"),  # Arabic-Indic digit one
    ],
)
def test_rejects_what_docker_rejects(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_reference(text)
    assert reason in info.value.diagnostics()


def test_uppercase_path_hint_gives_the_lowercase_spelling() -> None:
    with pytest.raises(UsageError) as info:
        parse_reference("ghcr.io/Owner/App:v1")
    assert info.value.hint is not None
    assert "'owner/app'" in info.value.hint


def test_tag_length_limit_is_128() -> None:
    assert parse_reference("app:" + "x" * 128).tag == "x" * 128
    assert is_valid_tag("x" * 128)
    assert not is_valid_tag("x" * 129)
    with pytest.raises(UsageError, match="at most 128"):
        require_valid_tag("x" * 129)


@pytest.mark.parametrize("tag", ["", ".a", "-a", "a+b", "a/b", "a:b", "ä", "a b"])
def test_require_valid_tag_refuses(tag: str) -> None:
    with pytest.raises(UsageError):
        require_valid_tag(tag)


def test_repository_and_builders() -> None:
    ref = parse_reference("host:5000/team/app")
    assert ref.repository == "host:5000/team/app"
    tagged = ref.with_tag("v1.2.3")
    assert str(tagged) == "host:5000/team/app:v1.2.3"
    assert str(tagged.with_digest(SHA)) == f"host:5000/team/app:v1.2.3@{SHA}"
    with pytest.raises(UsageError):
        ref.with_tag("v1+build")


_alnum = st.text(alphabet="az09", min_size=1, max_size=4)
_component = st.builds(
    lambda first, pairs: first + "".join(sep + word for sep, word in pairs),
    _alnum,
    st.lists(st.tuples(st.sampled_from([".", "_", "__", "-", "--"]), _alnum), max_size=2),
)
_tag = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("aZ9_"),
    st.text(alphabet="aZ9_.-", max_size=20),
)
_host = st.sampled_from([None, "ghcr.io", "localhost", "localhost:5000", "[::1]:5000", "r.io:1"])


@given(
    host=_host,
    path=st.lists(_component, min_size=1, max_size=3).map("/".join),
    tag=st.none() | _tag,
    digest=st.none() | st.just(SHA),
)
def test_round_trip(host: str | None, path: str, tag: str | None, digest: str | None) -> None:
    ref = ImageRef(host, path, tag, digest)
    text = str(ref)
    parsed = parse_reference(text)
    assert str(parsed) == text
    assert parsed.tag == tag
    assert parsed.digest == digest
    if host is not None:
        assert parsed.host == host


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ghcr.io/Acme-Corp/App", "ghcr.io/acme-corp/app"),
        ("GHCR.IO/Acme-Corp/App:V1.2.3", "ghcr.io/acme-corp/app:V1.2.3"),
        ("Registry:5000/Team/App", "registry:5000/team/app"),
        ("Registry:5000/Team/App:Dev-X", "registry:5000/team/app:Dev-X"),
        ("ghcr.io/o/App@sha256:" + "a" * 64, "ghcr.io/o/app@sha256:" + "a" * 64),
        ("ghcr.io/o/App:Tag@sha256:" + "a" * 64, "ghcr.io/o/app:Tag@sha256:" + "a" * 64),
        ("ghcr.io/o/app", "ghcr.io/o/app"),
    ],
)
def test_lowercase_repository_keeps_tag_and_digest(text: str, expected: str) -> None:
    assert lowercase_repository(text) == expected
    assert str(parse_reference(lowercase_repository(text))) == expected


@given(
    host=st.sampled_from(["", "ghcr.io/", "Registry.Example.COM:5000/", "localhost:5000/"]),
    path=st.from_regex(r"[A-Za-z0-9]{1,8}(/[A-Za-z0-9]{1,8}){0,2}", fullmatch=True),
    tag=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)),
)
def test_lowercase_repository_changes_only_the_repository(
    host: str, path: str, tag: str | None
) -> None:
    text = host + path + (f":{tag}" if tag is not None else "")
    ref = parse_reference(lowercase_repository(text))
    assert ref.repository == (host + path).lower()
    assert ref.tag == tag
