"""Hostile weight updates, from memory (/update_weights) and from disk (/update_weights_from_disk).

Every refused case: the status and text, nothing loaded (policy version unchanged), the server up
and the store exactly what it was. Disk checkpoints are built in an allowed --weights-dir.
"""

import base64
import json
import os
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from specrl_sglang.server.client import encode_tensor

EMBED = "model.embed_tokens.weight"


@pytest.fixture(scope="module")
def up(server, base_weights):
    server.assert_up()
    yield server
    server.client().update_weights(base_weights)  # leave base weights to the next module


def tensor_body(**spec):
    good = encode_tensor(torch.zeros(4, dtype=torch.float32))
    return {"tensors": {"model.norm.weight": {**good, **spec}}}


def refused(server, path, body, status, fragment, field=None, fmt="msgpack"):
    version, digest = server.assert_up()["policy_version"], server.digest()
    code, reply = server.post(path, body, fmt=fmt)
    assert code == status, reply
    assert fragment in reply["error"]["message"], reply
    if field is not None:
        assert reply["error"]["field"] == field, reply
    health = server.assert_up()
    assert health["policy_version"] == version and health["status"] == "ok"
    assert server.digest() == digest
    return reply


def norm(shape=None, dtype=torch.float32, fill=1.0):
    return torch.full(shape or (64,), fill, dtype=dtype)


MEMORY = [
    ("tensors-empty", {"tensors": {}}, 400, "non-empty map", "tensors"),
    ("tensors-missing", {}, 400, "non-empty map", "tensors"),
    ("tensors-list", {"tensors": [1, 2]}, 400, "non-empty map", "tensors"),
    ("unknown-field", {"tensors": {}, "flush": True}, 400, "unknown field", "flush"),
    ("spec-not-map", {"tensors": {"model.norm.weight": 5}}, 400, "must be a map", "tensors.model.norm.weight"),
    ("no-dtype", {"tensors": {"model.norm.weight": {"shape": [4], "data": b"\0" * 16}}}, 400, "dtype must be one of", None),
    ("dtype-complex", tensor_body(dtype="complex64"), 400, "dtype must be one of", "tensors.model.norm.weight.dtype"),
    ("shape-string", tensor_body(shape="4"), 400, "shape must be a list", "tensors.model.norm.weight.shape"),
    ("shape-negative", tensor_body(shape=[-4]), 400, "[0, 2147483647]", "tensors.model.norm.weight.shape[0]"),
    ("shape-9-dims", tensor_body(shape=[1] * 9), 400, "at most 8", "tensors.model.norm.weight.shape"),
    ("shape-huge", tensor_body(shape=[2**31 - 1, 2**31 - 1]), 400, "needs", "tensors.model.norm.weight.data"),
    ("data-short", tensor_body(data=b"\0" * 12), 400, "has 12 bytes", "tensors.model.norm.weight.data"),
    ("data-int", tensor_body(data=5), 400, "must be bytes", "tensors.model.norm.weight.data"),
    ("name-empty", {"tensors": {"": encode_tensor(torch.zeros(4))}}, 400, "tensor names", "tensors"),
    ("name-unknown", {"tensors": {"model.no_such.weight": encode_tensor(torch.zeros(4))}}, 400, "no parameter named", "tensors"),
    ("shape-wrong", {"tensors": {EMBED: encode_tensor(torch.zeros(3, 3))}}, 400, "has shape [3, 3]", "tensors"),
    ("shape-transposed", {"tensors": {"model.norm.weight": encode_tensor(torch.zeros(64, 1))}}, 400, "has shape [64, 1]", "tensors"),
    ("dtype-int64", {"tensors": {"model.norm.weight": encode_tensor(torch.ones(64, dtype=torch.int64))}}, 400, "floating point", "tensors"),
    ("dtype-bool", {"tensors": {"model.norm.weight": encode_tensor(torch.ones(64, dtype=torch.bool))}}, 400, "floating point", "tensors"),
    ("dtype-uint8", {"tensors": {"model.norm.weight": encode_tensor(torch.ones(64, dtype=torch.uint8))}}, 400, "floating point", "tensors"),
    ("nan", {"tensors": {"model.norm.weight": encode_tensor(norm(fill=float("nan")))}}, 400, "NaN or infinite", "tensors"),
    ("inf", {"tensors": {"model.norm.weight": encode_tensor(norm(fill=float("inf")))}}, 400, "NaN or infinite", "tensors"),
    ("wait-string", {**tensor_body(), "wait_s": "soon"}, 400, "wait_s must be a number", "wait_s"),
    ("wait-negative", {**tensor_body(), "wait_s": -1}, 400, "wait_s must be in", "wait_s"),
    ("wait-1e10", {**tensor_body(), "wait_s": 1e10}, 400, "wait_s must be in", "wait_s"),
    ("wait-uint64", {**tensor_body(), "wait_s": 2**64 - 1}, 400, "wait_s must be in", "wait_s"),
    ("interrupt-string", {**tensor_body(), "interrupt": "yes"}, 400, "interrupt must be a boolean", "interrupt"),
]


@pytest.mark.parametrize("body, status, fragment, field", [c[1:] for c in MEMORY], ids=[c[0] for c in MEMORY])
def test_hostile_memory_update_loads_nothing(up, body, status, fragment, field):
    refused(up, "update_weights", body, status, fragment, field)


@pytest.mark.parametrize("text, fragment", [
    ('{"tensors": {}, "wait_s": NaN}', "finite"),
    ('{"tensors": {}, "wait_s": Infinity}', "finite"),
    ('{"tensors": {}, "wait_s": 1e999}', "finite"),
    ('{"tensors": {"model.norm.weight": {"dtype": "float32", "shape": [4], "data": "!!not base64!!"}}}', "not valid base64"),
], ids=["wait-nan", "wait-inf", "wait-1e999", "data-bad-base64"])
def test_hostile_json_update_loads_nothing(up, text, fragment):
    refused(up, "update_weights", text.encode(), 400, fragment, fmt="application/json")


def test_oversized_weights_body_is_413_before_it_is_read(up):
    version, digest = up.assert_up()["policy_version"], up.digest()
    answer = up.raw("POST", "/update_weights", {"Content-Type": "application/msgpack", "Content-Length": str(64 << 20),
                                                 "Authorization": f"Bearer {up.token}"})  # > 8 B/param + 1 MiB; no body sent
    assert answer.startswith("HTTP/1.1 413") and "exceeds this endpoint's limit" in answer
    assert up.assert_up()["policy_version"] == version and up.digest() == digest


def test_valid_float16_and_json_updates_load(up, base_weights):
    client = up.client()
    version = client.health()["policy_version"]
    half = {"model.norm.weight": base_weights["model.norm.weight"].half()}
    assert client.update_weights(half)["policy_version"] == version + 1  # cast by SGLang into the float32 parameter
    raw = base_weights["model.norm.weight"].numpy().astype("<f4").tobytes()
    text = json.dumps({"tensors": {"model.norm.weight": {"dtype": "float32", "shape": [64], "data": base64.b64encode(raw).decode()}}})
    code, reply = up.post("update_weights", text.encode(), fmt="application/json")
    assert code == 200 and reply["policy_version"] == version + 2
    up.assert_up()


# ---------------------------------------------------------------- disk
@pytest.fixture(scope="module")
def ckpts(weights_root, tiny_model_path, base_weights, tmp_path_factory):
    """Checkpoint directories inside the allowed --weights-dir, good and bad."""
    root = weights_root / "ckpts"
    root.mkdir(exist_ok=True)
    outside = tmp_path_factory.mktemp("outside")

    def make(name, tensors=None, raw=None):
        d = root / name
        d.mkdir(exist_ok=True)
        if tensors is not None:
            save_file(tensors, str(d / "model.safetensors"))
        if raw is not None:
            (d / "model.safetensors").write_bytes(raw)
        return str(d)

    good = {k: v.contiguous() for k, v in base_weights.items()}
    save_file(good, str(outside / "model.safetensors"))
    paths = {
        "empty": make("empty"),
        "garbage": make("garbage", raw=b"this is not a safetensors file at all"),
        "header-huge": make("header-huge", raw=struct.pack("<Q", 2**60) + b"{}"),
        "header-not-json": make("header-not-json", raw=struct.pack("<Q", 5) + b"{{{{{"),
        "truncated": make("truncated", raw=(outside / "model.safetensors").read_bytes()[:-100]),
        "wrong-shape": make("wrong-shape", {EMBED: torch.zeros(3, 3)}),
        "unknown-name": make("unknown-name", {"model.no_such.weight": torch.zeros(4)}),
        "int-tensor": make("int-tensor", {"model.norm.weight": torch.ones(64, dtype=torch.int32)}),
        "nan": make("nan", {"model.norm.weight": torch.full((64,), float("nan"))}),
        "partial-good": make("partial-good", {"model.norm.weight": base_weights["model.norm.weight"] * 1.01}),
    }
    link = root / "link-out"
    if not link.exists():
        os.symlink(outside, link)
    paths["symlink-dir"] = str(link)
    linked = root / "linked-file"
    linked.mkdir(exist_ok=True)
    if not (linked / "model.safetensors").exists():
        os.symlink(outside / "model.safetensors", linked / "model.safetensors")
    paths["symlink-file"] = str(linked)
    paths["config-file"] = str(os.path.join(tiny_model_path, "config.json"))
    paths["outside"] = str(outside)
    shutil.copy(os.path.join(tiny_model_path, "config.json"), outside / "config.json")
    return paths


DISK = [
    ("no-path", None, 400, "path must be a non-empty string"),
    ("empty-string", "", 400, "path must be a non-empty string"),
    ("nul", "/tmp/\x00x", 400, "NUL"),
    ("root", "/", 400, "outside the allowed weight directories"),
    ("etc", "/etc", 400, "outside the allowed weight directories"),
    ("dotdot", "{root}/../../..", 400, "outside the allowed weight directories"),
    ("missing", "{root}/no-such-dir", 400, "not a checkpoint directory"),
    ("outside", "{outside}", 400, "outside the allowed weight directories"),
    ("config-file", "{config-file}", 400, "not a checkpoint directory"),
    ("empty", "{empty}", 400, "holds no safetensors weights"),
    ("garbage", "{garbage}", 400, "not a readable safetensors file"),
    ("header-huge", "{header-huge}", 400, "not a readable safetensors file"),
    ("header-not-json", "{header-not-json}", 400, "not a readable safetensors file"),
    ("truncated", "{truncated}", 400, "cannot read"),
    ("wrong-shape", "{wrong-shape}", 400, "has shape [3, 3]"),
    ("unknown-name", "{unknown-name}", 400, "no parameter named"),
    ("int-tensor", "{int-tensor}", 400, "floating point"),
    ("nan", "{nan}", 400, "NaN or infinite"),
    ("symlink-dir", "{symlink-dir}", 400, "outside the allowed weight directories"),
    ("symlink-file", "{symlink-file}", 400, "links outside"),
]


@pytest.mark.parametrize("path, status, fragment", [c[1:] for c in DISK], ids=[c[0] for c in DISK])
def test_hostile_disk_update_loads_nothing(up, ckpts, weights_root, path, status, fragment):
    if path is not None:
        path = path.format(root=str(weights_root / "ckpts"), **ckpts)
    body = {} if path is None else {"path": path}
    refused(up, "update_weights_from_disk", body, status, fragment, "path")


def test_partial_checkpoint_from_an_allowed_dir_loads(up, ckpts, tiny_model_path):
    client = up.client()
    version = client.health()["policy_version"]
    reply = client.update_weights_from_disk(ckpts["partial-good"])
    assert reply["policy_version"] == version + 1 and reply["num_tensors"] == 1
    assert client.health()["weights_from"] == os.path.realpath(ckpts["partial-good"])
    assert client.rollout([{"prompt_id": "after-disk", "prompt_ids": [5, 6, 7], "n": 2}], 8)["policy_version"] == version + 1
    assert client.update_weights_from_disk(tiny_model_path)["policy_version"] == version + 2
