"""The README and the guide pages: their commands and snippets work, their words are a user's.

Each README snippet runs on its own, and each guide page's snippets run top to
bottom, in a fresh interpreter with JAX's default settings, as a reader would
run them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import checkout_env, python_run

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_snippet(code: str, cwd: Path) -> str:
    result = python_run("-c", code, cwd=cwd, env=checkout_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_readme_has_the_two_set_up_commands_and_ci_runs_the_second():
    commands = re.findall(r"```bash\n(pip install [^\n]+)\n```", README)
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "examples/quickstart.py" in demo
    assert "pytest -n" in tests  # in parallel: the suite must fit CI's time on two cores
    # CI runs the same two commands, in order, each on a line of its own (the lint starts between them).
    install, suite = tests.split(" && ")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install in ci and suite in [line.split(" || ")[0] for line in ci], ci
    assert ci.index(install) < [line.split(" || ")[0] for line in ci].index(suite)


def test_readme_is_short_and_links_every_guide_page():
    assert len(README.splitlines()) <= 200
    for page in DOCS:
        if page.name != "index.md":
            assert f"(docs/{page.name})" in README, page.name


def test_readme_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(((?!https?://)[^)#]+)\)", README):
        assert (ROOT / target).exists(), target


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_each_readme_snippet_runs_on_its_own(index, tmp_path):
    code = python_blocks(README)[index]
    out = run_snippet(code, tmp_path)
    if "close to [1, -2, 3]" in code:  # the quick starts: trained, not only run
        final = [float(v) for v in re.findall(r"-?\d+\.\d*", out.splitlines()[-1])]
        assert len(final) == 3 and max(abs(a - b) for a, b in zip(final, [1, -2, 3], strict=True)) < 0.05, out
    if "swinging.png" in code:
        assert (tmp_path / "swinging.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in DOCS if python_blocks(p.read_text())], ids=lambda p: p.stem)
def test_guide_page_snippets_run_top_to_bottom(page, tmp_path):
    run_snippet("\n".join(python_blocks(page.read_text())), tmp_path)


# A user has never seen the design notes this project grew from, nor its tracker.
PRIVATE_WORDS = re.compile(r"(?i)\bseed ?\d{3}\b|\bthe seeds?\b|\bseed's\b|\bissue \d+\b|\bgists?\b")
USER_TEXT = (
    [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS]
    + [
        ROOT / "examples" / name
        for name in ("quickstart.py", "mlp_both_apis.py", "quadratic_from_scratch.py", "jax_training_loop.py")
    ]
    + [ROOT / "examples" / "_make_tpu_quickstart.py"]
)


@pytest.mark.parametrize("path", USER_TEXT, ids=lambda p: p.name)
def test_user_facing_text_names_things_by_what_they_are(path):
    found = [line for line in path.read_text().splitlines() if PRIVATE_WORDS.search(line)]
    assert not found, found


def test_the_repository_address_is_the_same_everywhere():
    repository = re.search(r'^Repository = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    for path in (ROOT / "README.md", ROOT / "docs" / "install.md", ROOT / "mkdocs.yml"):
        addresses = set(re.findall(r"https://github\.com/[\w-]+/adamjax", path.read_text()))
        assert addresses == {repository}, (path.name, addresses)


def test_install_hints_are_quoted_for_every_shell():
    # `pip install adamjax[plot]` breaks in zsh (the brackets are a glob); every hint must quote it.
    unquoted = re.compile(r"pip install (?:-e )?(?![\"'])[^\s\"'`]*[\[@]")
    offenders = {}
    for path in [*USER_TEXT, *(ROOT / "adamjax").glob("*.py"), *(ROOT / "examples").glob("*.py")]:
        bad = [line.strip() for line in path.read_text().splitlines() if unquoted.search(line)]
        if bad:
            offenders[path.name] = bad
    assert not offenders, offenders
