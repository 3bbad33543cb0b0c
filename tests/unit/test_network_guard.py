"""The autouse guard in tests/conftest.py: loopback works, the internet does not."""

from __future__ import annotations

import socket
import threading

import pytest


@pytest.mark.parametrize("address", [("93.184.216.34", 443), ("8.8.8.8", 53), ("10.0.0.1", 80)])
def test_socket_connect_to_public_address_is_blocked(address: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(RuntimeError, match="loopback"):
        sock.connect(address)


def test_create_connection_by_name_is_blocked() -> None:
    with pytest.raises(RuntimeError, match="loopback"):
        socket.create_connection(("api.openai.com", 443), timeout=1)


def test_dns_lookup_is_blocked() -> None:
    with pytest.raises(RuntimeError, match="resolve"):
        socket.getaddrinfo("api.groq.com", 443)


def test_loopback_still_works() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            accepted.append(conn.recv(5))

    thread = threading.Thread(target=accept)
    thread.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"hello")
    thread.join(timeout=5)
    server.close()
    assert accepted == [b"hello"]


def test_localhost_name_resolves() -> None:
    infos = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    assert infos
