"""The documentation site builds in strict mode and documents every public name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import python_run

import adamjax
import adamjax.nnx
from adamjax import optimizers, plot, signals

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, list[str], int]:
    out = tmp_path_factory.mktemp("site")
    result = python_run("-m", "mkdocs", "build", "--strict", "--site-dir", out, cwd=ROOT, timeout=600)
    warnings = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    return out, warnings, result.returncode


@pytest.mark.slow
def test_site_builds_in_strict_mode(site):
    _, warnings, returncode = site
    assert not warnings, "\n".join(warnings)
    assert returncode == 0


def _public(module) -> list[str]:
    return [name for name in module.__all__ if not name.startswith("_")]


@pytest.mark.slow
@pytest.mark.parametrize(
    "module",
    [adamjax, optimizers, signals, plot, adamjax.nnx],
    ids=lambda m: m.__name__,
)
def test_every_public_name_has_its_entry_in_the_api_reference(site, module):
    out, _, _ = site
    html = (out / "api" / "index.html").read_text()
    anchors = set(re.findall(r'id="(adamjax[\w.]*)"', html))
    submodules = {"optimizers", "plot", "signals", "nnx"}
    names = [n for n in _public(module) if not (module is adamjax and n in submodules)]
    assert names
    missing = [n for n in names if f"{module.__name__}.{n}" not in anchors]
    assert not missing, missing


@pytest.mark.slow
def test_every_guide_page_is_in_the_navigation(site):
    out, _, _ = site
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f": {page.name}" in nav, page.name
        assert (out / ("" if page.stem == "index" else page.stem) / "index.html").exists(), page.name
