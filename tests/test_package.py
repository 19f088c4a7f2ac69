"""Package hygiene: importing eqntk leaves JAX's configuration alone; the CLI answers --help."""

import subprocess
import sys


def test_import_does_not_enable_x64():
    code = "import jax, eqntk; assert not jax.config.jax_enable_x64; print(eqntk.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_cli_help():
    out = subprocess.run([sys.executable, "-m", "eqntk.cli", "--help"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "kernels" in out.stdout
