"""The README's Python snippets run as written (in order, in one fresh interpreter, as a reader pastes them)."""

import os
import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


def test_readme_has_python_snippets():
    assert len(python_blocks()) >= 2


def test_readme_snippets_execute(tmp_path):
    # a subprocess: the snippets enable x64, which must not leak into the other tests
    script = "\n\n".join(python_blocks())
    (tmp_path / "readme_snippets.py").write_text(script, encoding="utf-8")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "readme_snippets.py"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
