"""The API's bearer token, the loopback rule and `--serve [HOST:]PORT` parsing."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from anvil_cli.errors import UsageError
from anvil_cli.views.api.address import is_loopback, parse_serve
from anvil_cli.views.api.auth import resolve_token
from anvil_cli.views.api.server import ApiServer
from tests.test_api_server import TOKEN, FakeController


def test_generated_token_is_written_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    token, generated = resolve_token(state, "127.0.0.1", {})
    assert generated and len(token) >= 40
    path = state / "api_token"
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    again, _ = resolve_token(state, "localhost", {})
    assert again != token and path.read_text().strip() == again
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_from_the_environment_is_not_written(tmp_path: Path) -> None:
    token, generated = resolve_token(tmp_path, "0.0.0.0", {"ANVIL_API_TOKEN": " my-own-long-secret-value "})
    assert (token, generated) == ("my-own-long-secret-value", False)
    assert not (tmp_path / "api_token").exists()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_non_loopback_needs_a_token_of_ones_own(tmp_path: Path, host: str) -> None:
    with pytest.raises(UsageError, match="ANVIL_API_TOKEN"):
        resolve_token(tmp_path, host, {})
    with pytest.raises(UsageError, match="too short"):
        resolve_token(tmp_path, host, {"ANVIL_API_TOKEN": "short"})
    assert not (tmp_path / "api_token").exists()
    with pytest.raises(UsageError, match="ANVIL_API_TOKEN"):
        ApiServer(FakeController(), host, 0, TOKEN).start()


def test_remote_bind_allowed_with_own_token() -> None:
    with ApiServer(FakeController(), "0.0.0.0", 0, TOKEN, allow_remote=True).start() as srv:
        assert srv.port > 0


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"])
def test_is_loopback(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "myhost", "::ffff:127.0.0.1"])
def test_is_not_loopback(host: str) -> None:
    assert not is_loopback(host)


# -- parse_serve ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8080", ("127.0.0.1", 8080)),
        (" 8080 ", ("127.0.0.1", 8080)),
        (":8080", ("127.0.0.1", 8080)),
        ("0", ("127.0.0.1", 0)),
        ("0.0.0.0:9000", ("0.0.0.0", 9000)),
        ("localhost:65535", ("localhost", 65535)),
        ("my-host.lan:80", ("my-host.lan", 80)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:1", ("::", 1)),
    ],
)
def test_parse_serve(value: str, expected: tuple[str, int]) -> None:
    assert parse_serve(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty"),
        ("abc", "not a number"),
        ("8080:", "port is missing"),
        ("65536", "out of range"),
        ("-1", "not a number"),
        ("+80", "not a number"),
        ("١٢٣", "not a number"),
        ("::1:8080", "brackets"),
        ("[::1]", "a port must follow"),
        ("[::1]8080", "a port must follow"),
        ("[::1:8080", "not closed"),
        ("[nope]:80", "not an IPv6 address"),
        ("300.1.1.1:80", "not an IPv4 address"),
        ("http://x:80", "not a host name"),
        ("a b:80", "not a host name"),
    ],
)
def test_parse_serve_refuses_garbage(value: str, reason: str) -> None:
    with pytest.raises(UsageError, match="expected \\[HOST:\\]PORT") as info:
        parse_serve(value)
    assert reason in str(info.value)


# -- lifecycle --------------------------------------------------------------------------------
