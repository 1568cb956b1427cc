"""The import rules of ARCHITECTURE.md, read from the source with ``ast`` (nothing is imported): inference/
(what the serving images run) imports nothing of components/ or pipelines/; components/ imports nothing
of inference/; the bundle contract imports nothing of the project, and nothing outside the standard
library but ``minio``, lazily. Every import counts: at module level, inside functions (lazy), under
``if TYPE_CHECKING``, relative ones, and ``importlib.import_module`` / ``__import__`` with a literal name."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ("bundle", "components", "inference", "pipelines")
FORBIDDEN = {"inference": ("components", "pipelines"),
             "components": ("inference",),
             "bundle": ("components", "inference", "pipelines")}
BUNDLE_THIRD_PARTY = {"minio"}  # the S3 client, imported only when an s3:// store is used


@dataclass(frozen=True)
class Import:
    module: str  # absolute dotted name
    line: int
    lazy: bool  # inside a function


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import in ``source`` (the text of ``module``), with relative names made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import sub`` may import the submodule pkg.sub: count both names
            found.append(Import(base, node.lineno, lazy))
            found.extend(Import(f"{base}.{alias.name}", node.lineno, lazy) for alias in node.names
                         if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")
                   or isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")):
            found.append(Import(node.args[0].value, node.lineno, lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(source), False)
    return found


def sources(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def project_imports(package: str) -> list[tuple[str, Import]]:
    """``(file, import)`` for every import in the package's source."""
    found = []
    for path in sources(package):
        for item in imports(path.read_text(), module_name(path), path.name == "__init__.py"):
            found.append((path.relative_to(ROOT).as_posix(), item))
    return found


def top(name: str) -> str:
    return name.split(".", 1)[0]


def report(found: list[tuple[str, Import]]) -> list[str]:
    """One line per import statement (``from a import b`` yields a and a.b: the shorter is named)."""
    by_line: dict[tuple[str, int], Import] = {}
    for file, item in found:
        seen = by_line.get((file, item.line))
        if seen is None or len(item.module) < len(seen.module):
            by_line[(file, item.line)] = item
    return [f"{file}:{line} imports {item.module}{' (lazily)' if item.lazy else ''}"
            for (file, line), item in sorted(by_line.items())]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_its_rule_forbids(package):
    assert sources(package), f"no source under {package}/"
    violations = report([(file, item) for file, item in project_imports(package)
                         if top(item.module) in FORBIDDEN[package]])
    assert not violations, f"{package}/ must not import {' or '.join(FORBIDDEN[package])}:\n" + "\n".join(violations)


def test_the_bundle_contract_needs_only_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"__future__", "bundle"}
    violations = report([(file, item) for file, item in project_imports("bundle")
                         if top(item.module) not in allowed
                         and not (top(item.module) in BUNDLE_THIRD_PARTY and item.lazy)])
    assert not violations, "bundle/ may import the standard library only (minio lazily):\n" + "\n".join(violations)


def test_the_reader_sees_every_kind_of_import():
    source = '''
from __future__ import annotations
import os, components.common.settings as settings
from typing import TYPE_CHECKING
from . import sibling
from ..common import storage
if TYPE_CHECKING:
    from pipelines import catalog

def later():
    import inference.server
    from importlib import import_module
    import_module("pipelines.local_stack")
    return __import__("components")

class Runtime:
    def load(self):
        from bundle import open_bundle
'''
    found = {(i.module, i.lazy) for i in imports(source, "components.pneumonia.export")}
    assert {("os", False), ("components.common.settings", False), ("components.pneumonia.sibling", False),
            ("components.common.storage", False), ("pipelines.catalog", False), ("inference.server", True),
            ("pipelines.local_stack", True), ("components", True), ("bundle.open_bundle", True)} <= found
    assert ("bundle.reader", False) in {(i.module, i.lazy) for i in imports("from .reader import x", "bundle",
                                                                             is_package=True)}
