"""OpenRLHF's own `train_ppo_ray` argument parser, built without importing OpenRLHF.

OpenRLHF 0.11.2 defines its parser inside `if __name__ == "__main__":` of
`openrlhf/cli/train_ppo_ray.py`, after module-level imports of Ray, vLLM and its trainer (seconds
to import, and on CPU `flash_attn` is missing). `openrlhf_parser()` locates that file without
importing the package, takes the statements of the `__main__` block up to `parse_args()`, checks
that they only build the parser (`parser = argparse.ArgumentParser(...)`, `parser.add_argument(...)`
calls, `for` loops and comments over them), and runs exactly those. The result is OpenRLHF's parser
with its flags, defaults, choices and help text: `--help` prints it, and the launcher validates a
run's flags with it before anything starts. Any other statement shape raises OpenRLHFFlagsError
(a newer OpenRLHF changed the file; the launcher then says so instead of guessing).
"""

from __future__ import annotations

import argparse
import ast
import datetime as _datetime
import importlib.util
from functools import lru_cache
from pathlib import Path

PROG = "python -m integrations.openrlhf.train_ppo_ray"


class OpenRLHFFlagsError(RuntimeError):
    """OpenRLHF is not installed, or its train_ppo_ray parser is not in the expected shape."""


def train_ppo_ray_source() -> Path:
    spec = importlib.util.find_spec("openrlhf")  # a top-level find_spec does not run the package
    if spec is None or not spec.submodule_search_locations:
        raise OpenRLHFFlagsError("OpenRLHF is not installed (pip install openrlhf==0.11.2 --no-deps, see README)")
    path = Path(list(spec.submodule_search_locations)[0]) / "cli" / "train_ppo_ray.py"
    if not path.is_file():
        raise OpenRLHFFlagsError(f"{path} does not exist: not the OpenRLHF layout this launcher knows (0.11.2)")
    return path


def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _is_parser_call(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "add_argument"
            and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "parser")


def _is_parser_statement(node: ast.stmt) -> bool:
    if _is_parser_call(node):
        return True
    if isinstance(node, ast.For):
        return not node.orelse and all(_is_parser_statement(n) for n in node.body)
    return (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "parser" and isinstance(node.value, ast.Call)
            and ast.unparse(node.value.func) == "argparse.ArgumentParser")


def _parser_statements(tree: ast.Module, path: Path) -> list[ast.stmt]:
    guards = [n for n in tree.body if _is_main_guard(n)]
    if len(guards) != 1:
        raise OpenRLHFFlagsError(f"{path}: expected one `if __name__ == '__main__'` block")
    body: list[ast.stmt] = []
    for node in guards[0].body:
        if isinstance(node, ast.Assign) and ast.unparse(node.value) == "parser.parse_args()":
            break
        if not _is_parser_statement(node):
            raise OpenRLHFFlagsError(f"{path}:{node.lineno}: unexpected statement in the parser block: "
                                     f"{ast.unparse(node)[:80]!r}")
        body.append(node)
    else:
        raise OpenRLHFFlagsError(f"{path}: no `args = parser.parse_args()` in the __main__ block")
    if not body or not _is_parser_statement(body[0]) or _is_parser_call(body[0]):
        raise OpenRLHFFlagsError(f"{path}: the __main__ block does not start by creating `parser`")
    return body


@lru_cache(maxsize=1)
def _compiled() -> tuple[str, object]:
    path = train_ppo_ray_source()
    tree = ast.parse(path.read_text(), filename=str(path))
    module = ast.Module(body=_parser_statements(tree, path), type_ignores=[])
    return str(path), compile(module, str(path), "exec")


def openrlhf_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """A fresh copy of OpenRLHF's train_ppo_ray parser (see module docstring)."""
    path, code = _compiled()
    namespace = {"argparse": argparse, "datetime": _datetime.datetime}
    try:
        exec(code, namespace)  # only the checked parser-building statements of OpenRLHF's file
    except Exception as exc:
        raise OpenRLHFFlagsError(f"{path}: building OpenRLHF's parser failed: {type(exc).__name__}: {exc}") from None
    parser = namespace["parser"]
    parser.prog = prog
    return parser


def parse_openrlhf_args(argv: list[str]) -> dict:
    """OpenRLHF's flags as {dotted name: value} (its defaults filled in); argparse exits (status 2,
    with OpenRLHF's usage message) on an unknown or malformed flag, as OpenRLHF itself would."""
    return vars(openrlhf_parser().parse_args(argv))
