"""Where the server may write snapshots and read weight checkpoints; nothing else on disk is reachable.

`SnapshotDir`: the one dedicated directory of snapshots. Clients name snapshots by a plain file
name ending in `.snap` (no directories, no hidden files); the server writes only to names it owns:
the configured default snapshot and names it accepted a write to (claimed by `resolve(...,
for_write=True)` before the write starts, so a second request for the same file while the first
is being written is not refused), recorded in a manifest file inside the directory (so ownership
survives restarts); a write that then fails leaves the name owned and no file, which only lets
the server write it later. An existing file it did not create is never
overwritten, so the report, the model and anything an operator put there are out of reach.
Reading (restore) takes any `.snap` file in the directory. Temp files of snapshot writes killed
half-way are removed at start (`remove_stale_tmp`).

`WeightsAllowList`: checkpoint directories for `update_weights_from_disk` must resolve (symlinks
followed) inside one of the directories the operator allowed at start (`--weights-dir`), and so
must every safetensors file in them.

Errors are ApiError 400 (a malformed or forbidden name/path), 404 (restore: no such snapshot) and
409 (a write onto a file the server does not own); nothing is touched when one is raised.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from radix_cache.snapshot import tmp_name_pattern
from specrl_sglang.server.errors import ApiError

SNAPSHOT_SUFFIX = ".snap"
MANIFEST_NAME = ".specrl-owned-snapshots.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,122}\.snap")


def check_snapshot_name(name: str, what: str = "path") -> str:
    """`name` if it is a plain snapshot file name (`[A-Za-z0-9][A-Za-z0-9._-]*.snap`), else ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{what} must be a plain file name ending in {SNAPSHOT_SUFFIX} (letters, digits, '.', '_', '-'; "
            f"no directories) inside the snapshot directory, got {name!r:.80}"
        )
    return name


class SnapshotDir:
    """The snapshot directory (must exist); see the module docstring."""

    def __init__(self, root: str | os.PathLike, default_name: str | None = None) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise ValueError(f"snapshot directory {self.root} does not exist or is not a directory")
        self.default_name = None if default_name is None else check_snapshot_name(default_name, "--snapshot")
        self._manifest = self.root / MANIFEST_NAME
        self._owned = self._read_manifest()

    @property
    def default_path(self) -> Path | None:
        return None if self.default_name is None else self.root / self.default_name

    def owns(self, name: str) -> bool:
        return name == self.default_name or name in self._owned

    def remove_stale_tmp(self) -> list[str]:
        """Delete temp files left by snapshot writes that were killed; returns their names."""
        removed = []
        for path in sorted(self.root.glob(tmp_name_pattern(f"*{SNAPSHOT_SUFFIX}"))):
            if path.is_file() and not path.is_symlink():
                path.unlink()
                removed.append(path.name)
        return removed

    def resolve(self, name: str | None, for_write: bool) -> Path:
        """The file a request names (None: the default snapshot); ApiError if it may not be used."""
        if name is None:
            if self.default_name is None:
                raise ApiError(400, "no path given and the server has no default --snapshot", "path")
            name = self.default_name
        try:
            check_snapshot_name(name)
        except ValueError as exc:
            raise ApiError(400, f"{exc} ({self.root})", "path") from None
        target = self.root / name
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise ApiError(400, f"{name} in the snapshot directory is not a regular file", "path")
        if for_write and target.exists() and not self.owns(name):
            raise ApiError(409, f"{name} exists in {self.root} and was not written by this server; it is left alone", "path")
        if not for_write and not target.exists():
            raise ApiError(404, f"no snapshot named {name} in {self.root}", "path")
        if for_write:
            self.claim(target)  # owned from acceptance on: a concurrent write of this name is not refused
        return target

    def claim(self, path: Path) -> None:
        """Record that the server owns `path` (idempotent; `resolve` for a write calls it)."""
        name = path.name
        if self.owns(name):
            return
        self._owned.add(name)
        tmp = self._manifest.with_name(self._manifest.name + ".new")
        tmp.write_text(json.dumps(sorted(self._owned)))
        os.replace(tmp, self._manifest)

    def _read_manifest(self) -> set[str]:
        try:
            names = json.loads(self._manifest.read_text())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self._manifest} is unreadable ({exc}); remove it to start afresh") from None
        if not isinstance(names, list):
            raise ValueError(f"{self._manifest} is not a list of names; remove it to start afresh")
        return {n for n in names if isinstance(n, str) and _NAME.fullmatch(n)}


class WeightsAllowList:
    """Directories under which weight checkpoints may be loaded from disk (none: disk updates off)."""

    def __init__(self, roots: Iterable[str | os.PathLike] = ()) -> None:
        self.roots: tuple[Path, ...] = tuple(Path(r).resolve() for r in roots)
        for root in self.roots:
            if not root.is_dir():
                raise ValueError(f"--weights-dir {root} does not exist or is not a directory")

    def _inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def resolve(self, path: str) -> Path:
        """The checkpoint directory `path` names, or ApiError(400) if it is not allowed."""
        if not self.roots:
            raise ApiError(400, "this server loads no weights from disk (start it with --weights-dir DIR)", "path")
        try:
            target = Path(path).resolve()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ApiError(400, f"path {path!r:.80} cannot be resolved: {exc}", "path") from None
        if not self._inside(target):
            raise ApiError(400, f"path {path!r:.80} is outside the allowed weight directories {_names(self.roots)}", "path")
        if not target.is_dir():
            raise ApiError(400, f"path {path!r:.80} is not a checkpoint directory on the server", "path")
        for file in target.glob("*.safetensors"):
            if not self._inside(file.resolve()):
                raise ApiError(400, f"{file.name} in {target} links outside the allowed weight directories", "path")
        return target


def _names(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)
