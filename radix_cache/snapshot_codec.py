"""One prompt of a snapshot body: its namespace's node table plus its samples, in each format.

Arrays are raw little-endian bytes of ``DTYPES``. A prompt is a map {id, digest, has_versions,
nodes, samples}; ``nodes`` lists parents before children (parent index -1: below the namespace
root) and a sample names the node where its page-aligned part ends (-1: none).

* format 2 (written): node = [parent, tokens, logprobs]; sample = [node, tail tokens,
  tail logprobs, version runs or None], the runs being the sample's (num_runs, 2) (start,
  version) rows flattened (radix_cache.version_runs) over all its tokens.
* format 1 (read only): node = [parent, tokens, logprobs, versions or None]; sample = [node,
  tail tokens, tail logprobs, tail versions or None]: per-token versions along the tree.

Both decode to the full per-sample Responses that ``TrajectoryStore.put_digest`` re-stores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from radix_cache.node import TreeNode
from radix_cache.responses import Response
from radix_cache.store_records import StoredPrompt
from radix_cache.version_runs import decode_runs

DTYPES = {"token": "<i4", "logprob": "<f4", "version": "<i4"}


class SnapshotError(ValueError):
    """The file is not a readable snapshot of this format (truncated, corrupt, other kind...)."""


def encode_prompt(tree, prompt_id: str, entry: StoredPrompt) -> dict[str, Any]:
    """Format 2 map of one stored prompt (``tree``: the store's RadixCache; reads only)."""
    index: dict[int, int] = {}
    nodes: list[list[Any]] = []
    root = tree.namespace_root(prompt_id)
    stack: list[tuple[TreeNode, int]] = [(child, -1) for child in (root.children.values() if root else ())]
    while stack:
        node, parent_index = stack.pop()
        index[id(node)] = len(nodes)
        nodes.append([parent_index, _bytes(node.key, "token"), _bytes(node.value, "logprob")])
        stack.extend((child, index[id(node)]) for child in node.children.values())
    samples = []
    for sample in entry.samples:
        node_index = -1 if sample.node is None else index[id(sample.node)]
        runs = None if sample.version_runs is None else _bytes(sample.version_runs, "version")
        samples.append([node_index, _bytes(sample.tail_ids, "token"), _bytes(sample.tail_logprobs, "logprob"), runs])
    return {"id": prompt_id, "digest": entry.digest, "has_versions": entry.has_versions, "nodes": nodes,
            "samples": samples}


def decode_prompt(prompt: dict[str, Any], format_version: int) -> list[Response]:
    """Every sample's full arrays, rebuilt from a prompt map of ``format_version`` (1 or 2)."""
    old = format_version == 1
    paths: list[tuple] = []
    for parent_index, *payload in prompt["nodes"]:
        if len(payload) != (3 if old else 2):
            raise SnapshotError(f"prompt {prompt['id']!r}: a node has {len(payload) + 1} fields")
        edge = _decode_arrays(*payload) if old else _decode_arrays(*payload, None)
        if parent_index == -1:
            paths.append(edge)
        elif 0 <= parent_index < len(paths):
            paths.append(_join(paths[parent_index], edge))
        else:
            raise SnapshotError(f"prompt {prompt['id']!r}: node refers to unknown parent {parent_index}")
    responses = []
    for node_index, tokens, logprobs, versions in prompt["samples"]:
        arrays = _decode_arrays(tokens, logprobs, versions if old else None)
        if node_index != -1:
            if not 0 <= node_index < len(paths):
                raise SnapshotError(f"prompt {prompt['id']!r}: sample refers to unknown node {node_index}")
            arrays = _join(paths[node_index], arrays)
        if not old and versions is not None:
            runs = np.frombuffer(versions, dtype=DTYPES["version"]).reshape(-1, 2)
            arrays = (*arrays[:2], decode_runs(runs, len(arrays[0])))
        responses.append(Response(*arrays))
    return responses


def _bytes(array: np.ndarray, kind: str) -> bytes:
    return np.ascontiguousarray(array, dtype=DTYPES[kind]).tobytes()


def _decode_arrays(tokens: bytes, logprobs: bytes, versions: bytes | None) -> tuple:
    return (
        np.frombuffer(tokens, dtype=DTYPES["token"]).astype(np.int32),
        np.frombuffer(logprobs, dtype=DTYPES["logprob"]).astype(np.float32),
        None if versions is None else np.frombuffer(versions, dtype=DTYPES["version"]).astype(np.int32),
    )


def _join(head: tuple, tail: tuple) -> tuple:
    if (head[2] is None) != (tail[2] is None):
        raise SnapshotError("snapshot mixes versioned and unversioned payloads in one prompt")
    versions = None if head[2] is None else np.concatenate([head[2], tail[2]])
    return np.concatenate([head[0], tail[0]]), np.concatenate([head[1], tail[1]]), versions
