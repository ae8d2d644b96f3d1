"""The test suite's own layout: no test module imports another, nor a conftest.

A helper two test modules need lives in ``tests/support/`` (or, used by one folder only, in a
plain module of that folder); a fixture lives in a ``conftest.py``, which pytest loads itself.
Importing a test module runs its module-level code and collects its tests twice; importing a
conftest depends on how pytest put it on ``sys.path``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def _forbidden(module: str) -> bool:
    """A test module (``test_*``) or a conftest, at any depth of the dotted name."""
    return any(part.startswith("test_") or part == "conftest" for part in module.split("."))


def _package_of(path: Path, root: Path) -> list[str]:
    return [root.name, *path.parent.relative_to(root).parts]


def offending_imports(source: str, path: Path, root: Path = TESTS) -> list[str]:
    """The imports in ``source`` (the file ``path`` under ``root``, function-level ones too)
    that name a test module or a conftest, as ``line: module``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the file's own package
                package = _package_of(path, root)
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            # ``from tests.hostile import test_corpus`` imports a module by its name
            names = [f"{base}.{alias.name}" for alias in node.names]
            modules = [base] if _forbidden(base) else names
        else:
            continue
        found += [f"{node.lineno}: {m}" for m in modules if _forbidden(m)]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tests.test_web_soap import WebServer", ["1: tests.test_web_soap"]),
        ("import tests.hostile.test_corpus", ["1: tests.hostile.test_corpus"]),
        ("from tests.hostile import test_corpus", ["1: tests.hostile.test_corpus"]),
        ("def f():\n    from tests.conftest import Stack", ["2: tests.conftest"]),
        ("from conftest import Samples", ["1: conftest"]),
        ("from . import test_steps", ["1: tests.faults.test_steps"]),
        ("from .conftest import Fleet", ["1: tests.faults.conftest"]),
        ("from tests.support.web import WebServer\nimport pytest", []),
        ("from tests.hostile.corpus import plain_document", []),
    ],
)
def test_the_check_finds_every_spelling(source: str, expected: list[str]) -> None:
    path = TESTS / "faults" / "test_example.py"
    assert offending_imports(source, path) == expected


def test_no_test_module_imports_another_or_a_conftest() -> None:
    offences = {
        str(path.relative_to(TESTS.parent)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := offending_imports(path.read_text(encoding="utf-8"), path))
    }
    assert offences == {}, "move what they share to tests/support/ (see its __init__.py)"
