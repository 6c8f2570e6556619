"""Imports point down only: schema -> services -> geo -> tenants (deploy may import anything)."""

from __future__ import annotations

import ast
from pathlib import Path

from deploy.settings import REPO_ROOT

LAYERS = ["tenants", "geo", "services", "schema"]
ALLOWED = {layer: set(LAYERS[: index + 1]) for index, layer in enumerate(LAYERS)}
OURS = {*LAYERS, "deploy", "tests"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


def test_every_layer_imports_only_itself_and_the_layers_below() -> None:
    violations = []
    checked = 0
    for layer in LAYERS:
        for path in sorted((REPO_ROOT / layer).rglob("*.py")):
            checked += 1
            for package in imported_packages(path) - ALLOWED[layer]:
                violations.append(f"{path.relative_to(REPO_ROOT)} imports {package}")
    assert checked > 20
    assert violations == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from schema.app import create_app\nimport services.errors\n")
    assert imported_packages(bad) == {"schema", "services"}
    assert not imported_packages(bad) <= ALLOWED["tenants"]
