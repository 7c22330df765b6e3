"""The docs stay true to the code: generated pages are fresh, every environment variable and every
lib/ module is documented, every relative link and every docs/ path the code names exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "docs"))
import generate  # noqa: E402

SOURCES = [
    p
    for d in ("lib", "claims", "benchmarks", "tests")
    for p in sorted((ROOT / d).rglob("*"))
    if p.suffix in (".py", ".sh") and p.name != "test_docs.py"
] + [ROOT / "conftest.py", ROOT / "Makefile"]


@pytest.mark.parametrize("name", sorted(generate.PAGES))
def test_generated_page_is_fresh(name):
    committed = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert committed == generate.PAGES[name](), f"docs/{name} is stale: run `python docs/generate.py` and commit it"


def test_every_environment_variable_is_documented():
    read = {m for p in SOURCES for m in re.findall(r"DPHI_[A-Z0-9_]+", p.read_text(encoding="utf-8"))}
    assert read - set(generate.ENV_VARS) == set(), "read by the code but missing from docs/generate.py ENV_VARS"
    assert set(generate.ENV_VARS) - read == set(), "documented in docs/generate.py ENV_VARS but read nowhere"


def _layers() -> list[list[str]]:
    tomllib = pytest.importorskip("tomllib")
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layered,) = [c for c in contracts if c["type"] == "layers"]
    return [[m.strip() for m in layer.split("|")] for layer in layered["layers"]]


def test_every_lib_module_and_package_has_a_layer_in_the_import_contract():
    layered = {m for layer in _layers() for m in layer}
    top = {f"lib.{p.stem}" for p in (ROOT / "lib").glob("*.py") if p.stem != "__init__"}
    packages = {f"lib.{p.parent.name}" for p in (ROOT / "lib").glob("*/__init__.py")}
    assert (top | packages) - layered == set(), "add these to a layer of pyproject.toml's [tool.importlinter] layers"
    assert layered - (top | packages) == set(), "the import contract names modules that do not exist"


def test_the_layout_map_is_the_import_contract():
    """docs/internals.md's layer table lists the contract's layers, top first, each package's modules beside it."""
    text = (ROOT / "docs" / "internals.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", text, flags=re.M)
    documented = [sorted(m.strip(" `") for m in names.split(",")) for _, names in rows]
    assert documented == [sorted(layer) for layer in _layers()], "docs/internals.md's layer table is not the contract"
    for package in (p.parent for p in (ROOT / "lib").glob("*/__init__.py")):
        for module in sorted(package.rglob("*.py")):
            if module.stem != "__init__":
                assert f"`{module.stem}`" in text, (
                    f"docs/internals.md does not name lib/{module.relative_to(ROOT / 'lib')}"
                )


def _markdown() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", _markdown(), ids=lambda p: p.name)
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert missing == [], f"{page.name} links to files that do not exist"


def test_docs_pages_the_code_names_exist():
    named = {m for p in SOURCES for m in re.findall(r"docs/[\w-]+\.md", p.read_text(encoding="utf-8"))}
    assert {n for n in named if not (ROOT / n).is_file()} == set()


def test_readme_is_the_front_door():
    size = (ROOT / "README.md").stat().st_size
    assert size <= 10 * 1024, f"README.md is {size} bytes; details belong in docs/"
