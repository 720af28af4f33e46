"""The README's set-up commands and Python snippets are the ones that work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_test_command_is_what_ci_runs():
    commands = re.findall(r"```bash\n(pip install [^\n]+)\n```", README)
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "examples/quickstart.py" in demo
    assert tests in (ROOT / ".ci" / "run").read_text()
    assert "pytest" in tests


def test_readme_python_snippets_run_and_train(tmp_path):
    code = "\n".join(re.findall(r"```python\n(.*?)```", README, flags=re.S))
    # Fewer steps than the README shows; the point is that the code runs as written,
    # in a fresh interpreter with JAX's default settings, as a reader would run it.
    code = code.replace("range(1000)", "range(200)").replace("10_000", "2_000")
    code += "\nprint('final', *[float(v) for v in params['w']])\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    final = [float(v) for v in re.search(r"final (.*)", result.stdout).group(1).split()]
    target = [1.0, -2.0, 3.0]
    # From w = 0 the largest error is 3; the snippets' training must have reduced it.
    assert max(abs(w - t) for w, t in zip(final, target, strict=True)) < 2.7, final
    assert (tmp_path / "swinging.png").stat().st_size > 10_000
