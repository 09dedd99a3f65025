"""The probes that the tests and the benchmark share (serving/testing/probes.py)."""

import socket

from serving.testing.probes import FIRST_PORT, _ephemeral_start, free_port


def test_a_free_port_is_one_that_no_outgoing_connection_can_take_meanwhile():
    """A server binds its port seconds after ``free_port`` chose it (Ray starts first): the
    port is outside the kernel's ephemeral range, which outgoing connections draw from, and
    above Ray's workers' ports; and it is free."""
    ports = {free_port() for _ in range(20)}
    assert all(FIRST_PORT <= port < _ephemeral_start() for port in ports), ports
    for port in ports:
        with socket.socket() as server:
            server.bind(("127.0.0.1", port))
            server.listen()
