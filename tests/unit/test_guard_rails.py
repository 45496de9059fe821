"""The unit tests' guard rails hold: no socket, Docker engine or HTTP server is reachable."""

from __future__ import annotations

import socket

import docker
import httpx
import pytest

from tests.unit.conftest import RealIOForbidden


def test_a_tcp_connection_is_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(RealIOForbidden, match="connect to"),
    ):
        sock.connect(("127.0.0.1", 9))


def test_listening_is_refused() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(RealIOForbidden, match="listen on"),
    ):
        sock.bind(("127.0.0.1", 0))


def test_httpx_without_a_mock_cannot_reach_a_server() -> None:
    with httpx.Client(transport=httpx.HTTPTransport()) as client, pytest.raises(RealIOForbidden):
        client.get("http://127.0.0.1:9/")


def test_the_docker_engine_is_out_of_reach() -> None:
    # the SDK asks the engine for its API version as the client is made, and wraps the error
    with pytest.raises(docker.errors.DockerException, match="unit tests may not connect"):
        docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=2)
