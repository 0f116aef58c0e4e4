"""Bearer-token authentication of every mutating endpoint, and slow clients (read timeouts)."""

import socket
import threading
import time

import pytest
import requests

MUTATING = ["rollout", "update_weights", "update_weights_from_disk", "flush", "snapshot", "restore"]
BODIES = {
    "rollout": {"requests": [{"prompt_id": "auth", "prompt_ids": [5, 6], "n": 1}], "max_response_len": 4},
    "update_weights": {"tensors": {}},
    "update_weights_from_disk": {"path": "/"},
    "flush": {"store": True},
    "snapshot": {"path": "auth.snap"},
    "restore": {"path": "auth.snap"},
}
BAD_AUTH = {
    "missing": None,
    "wrong-token": "Bearer not-the-token-0123456789",
    "basic-scheme": "Basic dXNlcjpwYXNz",
    "bearer-no-token": "Bearer",
    "token-prefix": "Bearer {token}x",
    "token-truncated": "Bearer {short}",
    "raw-token": "{token}",
}


@pytest.fixture(scope="module")
def up(server):
    server.assert_up()
    return server


@pytest.mark.parametrize("how", list(BAD_AUTH))
@pytest.mark.parametrize("endpoint", MUTATING)
def test_mutating_endpoints_need_the_token(up, endpoint, how):
    before, version = up.digest(), up.assert_up()["policy_version"]
    files = sorted(p.name for p in up.snapdir.iterdir())
    header = BAD_AUTH[how]
    headers = {} if header is None else {"Authorization": header.format(token=up.token, short=up.token[:-1])}
    import msgpack

    r = requests.post(f"{up.url}/{endpoint}", data=msgpack.packb(BODIES[endpoint]),
                      headers={"Content-Type": "application/msgpack", **headers}, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in msgpack.unpackb(r.content)["error"]["message"]
    health = up.assert_up()
    assert health["policy_version"] == version and up.digest() == before
    assert sorted(p.name for p in up.snapdir.iterdir()) == files


@pytest.mark.parametrize("path", ["/health", "/stats", "/metrics", "/store"])
def test_read_only_endpoints_stay_open(up, path):
    assert requests.get(up.url + path, timeout=30).status_code == 200


def test_unauthenticated_upload_is_refused_before_the_body_is_read(up):
    t0 = time.monotonic()
    answer = up.raw("POST", "/update_weights", {"Content-Type": "application/msgpack", "Content-Length": str(3 << 30)})
    assert answer.startswith("HTTP/1.1 401") and time.monotonic() - t0 < 10


def test_health_reports_auth(up):
    assert up.client().health()["auth"] is True


# ---------------------------------------------------------------- slow clients (the server runs --read-timeout 3)
def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    sock.settimeout(seconds)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, data
            data += chunk
    except TimeoutError:
        return False, data


def _connect(up) -> socket.socket:
    host, port = up.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


@pytest.mark.parametrize("sends", [b"", b"POST /rollout HTTP/1.1\r\nHost: x\r\n", b"GE"], ids=["silent", "half-headers", "two-bytes"])
def test_clients_that_never_finish_their_headers_are_dropped(up, sends):
    with _connect(up) as s:
        s.sendall(sends)
        t0 = time.monotonic()
        health = threading.Thread(target=lambda: up.assert_up())  # others are served meanwhile
        health.start()
        closed, data = _closed_within(s, 20)
        health.join(20)
        assert closed and data == b"" and 2 < time.monotonic() - t0 < 15


def test_client_that_stalls_in_its_body_gets_408(up):
    before = up.digest()
    with _connect(up) as s:
        s.sendall(b"POST /rollout HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
                  + f"Authorization: Bearer {up.token}\r\n\r\n".encode() + b'{"requests": ')
        t0 = time.monotonic()
        closed, data = _closed_within(s, 20)
        assert data.startswith(b"HTTP/1.1 408") and b"no body bytes for 3" in data
        assert 2 < time.monotonic() - t0 < 15
    up.assert_up()
    assert up.digest() == before


def test_idle_keep_alive_connection_is_closed(up):
    with _connect(up) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        closed, data = _closed_within(s, 30)
        assert closed and data.startswith(b"HTTP/1.1 200")
