"""Keep the SGLang engine's own listeners on loopback.

SGLang's scheduler initialises torch.distributed even for one GPU/CPU rank: by default with
`tcp://host:nccl_port`, and torch's TCPStore then listens on ALL interfaces whatever host it is
given (SGLang's `host` / `dist_init_addr` server args only change the address it dials). So
`loopback()` points SGLang's rendezvous at a file store instead
(`SGLANG_DISTRIBUTED_INIT_METHOD_OVERRIDE=file://...`, in a private temp directory: no TCP
listener at all), binds gloo's pair sockets to the loopback interface (`GLOO_SOCKET_IFNAME=lo`)
and gives SGLang's CPU shared-memory segments a unique name (MASTER_ADDR/MASTER_PORT, which they
are named after). The variables are inherited by the engine's subprocesses; call it right before
each engine start. `serve --engine-listen any` skips it (SGLang's defaults: multi-node setups).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

from specrl_sglang.sglang_workers import free_port

INIT_OVERRIDE_ENV = "SGLANG_DISTRIBUTED_INIT_METHOD_OVERRIDE"


class LoopbackListeners:
    """Environment for one engine start; `close()` removes the rendezvous file's directory."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="specrl-dist-"))  # mode 0700: no one else can plant the file
        port = free_port("127.0.0.1")
        self.env = {
            INIT_OVERRIDE_ENV: f"file://{self._dir / 'rendezvous'}",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        if any(name == "lo" for _, name in socket.if_nameindex()):
            self.env["GLOO_SOCKET_IFNAME"] = "lo"
        os.environ.update(self.env)

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
