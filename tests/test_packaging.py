"""What a newcomer meets first, kept from drifting back: a short README that starts with the
two commands and indexes every doc, links that resolve, and packaging metadata that
installs without a deprecation wall and declares its version once.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
# docs/adding-a-method.md comes with the method-contract half of issue 18; until it lands
# the README's link to it may be the only trace of it. Drop this once the file exists.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _local_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, file it points to, anchor) for every relative link in `path`."""
    out = []
    for target in LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, anchor = target.partition("#")
        out.append((target, (path.parent / file).resolve() if file else path, anchor))
    return out


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return {_slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
    head = [line.strip() for line in lines[:30]]
    assert any(line.startswith("make bench") for line in head), "`make bench` not in lines 1-30"
    assert any(line.startswith("make test") for line in head), "`make test` not in lines 1-30"


def test_readme_indexes_every_doc_and_every_indexed_doc_exists():
    linked = {p.name for _, p, _ in _local_links(README) if p.parent == DOCS}
    on_disk = {p.name for p in DOCS.glob("*.md")}
    assert on_disk - linked == set(), "docs the README does not index"
    assert linked - on_disk == set(), "README links docs that do not exist"


@pytest.mark.parametrize("doc", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    broken = []
    for target, file, anchor in _local_links(doc):
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert broken == [], f"{doc.name}: links to nothing"


def test_the_readme_names_a_real_example_plugin():
    text = README.read_text(encoding="utf-8")
    for path in re.findall(r"`(methods/\w+\.py)`", text):
        assert (ROOT / path).is_file(), path
    assert "methods/fp16.py" in text


def test_license_is_an_spdx_string_with_a_license_file():
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    for name in project.get("license-files", ["LICENSE"]):
        assert (ROOT / name).is_file(), name
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    requires = _pyproject()["build-system"]["requires"]
    setuptools = [r for r in requires if _name(r) == "setuptools"]
    floor = re.search(r">=\s*(\d+)", setuptools[0]) if setuptools else None
    assert floor and int(floor.group(1)) >= 77, "an SPDX license string needs setuptools>=77"


def test_the_version_is_declared_once():
    import bench

    data = _pyproject()
    assert "version" not in data["project"]
    assert "version" in data["project"]["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bench.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", bench.__version__)


def test_runtime_dependencies_hold_no_test_or_lint_tools():
    project = _pyproject()["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert {n for n in runtime if n.startswith("pytest") or n == "ruff"} == set()
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    assert {"pytest", "pytest-benchmark", "ruff"} <= dev


def _imports(top_level_only: bool) -> list[tuple[str, str]]:
    """(file, imported module) of every absolute import in the installed packages; only
    those run at import time (module level) with `top_level_only`."""
    found = []
    for package in ("bench", "methods", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body if top_level_only else ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                found += [(str(path.relative_to(ROOT)), n) for n in names]
    return found


def test_installed_packages_do_not_import_dev_tools():
    dev_only = {"pytest", "pytest_benchmark", "ruff"}
    assert [f"{p}: {n}" for p, n in _imports(False) if n.split(".")[0] in dev_only] == []


def test_ci_lints_before_it_tests():
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make lint" in steps and "make test" in steps
    assert steps.index("make lint") < steps.index("make test")


RUNTIME_PACKAGES = {"openvino", "nncf", "executorch", "torchao"}


def test_runtimes_extra_has_lower_bounds_only_and_dev_includes_it():
    """Every deployment runtime in one extra that CI's dev install pulls in; bounds from
    below only, and never torch (a runtime must not move the torch a user has)."""
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["runtimes"]} == RUNTIME_PACKAGES
    assert all(re.fullmatch(r"[\w-]+>=[\d.]+", r) for r in extras["runtimes"])
    assert "segbench[runtimes]" in extras["dev"]
    assert not any(_name(r) == "torch" for r in extras["runtimes"])


def test_runtime_packages_are_imported_only_where_used():
    """The method registry imports every plugin module and the CLI imports bench: neither
    may need an optional runtime at import time, or a user without it could run nothing
    (a missing runtime is a one-line error when a grid asks for it)."""
    assert [f"{p}: {n}" for p, n in _imports(True)
            if n.split(".")[0] in RUNTIME_PACKAGES] == []
