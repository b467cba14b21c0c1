"""A free loopback port, without importing tests.utils (and with it the whole connector app)."""

import socket


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
