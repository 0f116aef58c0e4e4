"""SGLang's own listeners stay on loopback: no socket of the server or its engine processes listens
on another address (the HTTP API binds 127.0.0.1; the distributed-init rendezvous is a file)."""

import os

import psutil

from specrl_sglang.server.engine_listeners import INIT_OVERRIDE_ENV, LoopbackListeners

LOOPBACK = ("127.0.0.1", "::1")


def listening(server):
    procs = [psutil.Process(server.proc.pid), *psutil.Process(server.proc.pid).children(recursive=True)]
    found = []
    for proc in procs:
        for conn in proc.net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                found.append((proc.name(), conn.laddr.ip, conn.laddr.port))
    return found


def test_no_engine_listener_outside_loopback(server):
    found = listening(server)
    assert any(name.startswith("sglang") for name, _, _ in found), found  # the check sees SGLang's sockets
    assert [f for f in found if f[1] not in LOOPBACK] == [], found


def test_loopback_environment_points_rendezvous_at_a_private_file():
    saved = dict(os.environ)
    try:
        env = LoopbackListeners()
        init = os.environ[INIT_OVERRIDE_ENV]
        assert init.startswith("file://") and os.path.isdir(os.path.dirname(init.removeprefix("file://")))
        assert oct(os.stat(os.path.dirname(init.removeprefix("file://"))).st_mode & 0o777) == "0o700"
        assert os.environ["MASTER_ADDR"] == "127.0.0.1" and env.env["MASTER_PORT"].isdigit()
        env.close()
        assert not os.path.exists(os.path.dirname(init.removeprefix("file://")))
    finally:
        os.environ.clear()
        os.environ.update(saved)
