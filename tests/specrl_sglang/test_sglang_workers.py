"""free_port: ports for workers that bind later stay out of the kernel's ephemeral range."""

import socket

from specrl_sglang import sglang_workers
from specrl_sglang.sglang_workers import LISTEN_PORT_LOW, ephemeral_low, free_port


def test_free_ports_are_below_the_ephemeral_range_and_bindable():
    low = ephemeral_low()
    ports = {free_port() for _ in range(20)}
    assert all(LISTEN_PORT_LOW <= p < low for p in ports) and len(ports) > 1  # random, not one fixed port
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_handed_out():
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        taken = held.getsockname()[1]
        assert all(free_port() != taken for _ in range(200))


def test_without_room_below_the_range_it_falls_back_to_an_ephemeral_port(tmp_path, monkeypatch):
    real_low = ephemeral_low()
    (tmp_path / "range").write_text(f"{LISTEN_PORT_LOW + 10}\t60999\n")
    monkeypatch.setattr(sglang_workers, "EPHEMERAL_RANGE_FILE", str(tmp_path / "range"))
    assert ephemeral_low() == LISTEN_PORT_LOW + 10
    assert free_port() >= real_low  # bind(0) hands out the kernel's own ephemeral ports
