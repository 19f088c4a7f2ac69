"""Shared benchmark scaffolding: peers' own virtual environments, workers in subprocesses, timing,
peak RSS, result JSON and the machine's state.

Peers (qmllib, neural-tangents, the paper authors' code) pin versions of their own; each gets a
venv under ``$EQNTK_PEER_VENVS/<name>`` (default ``~/.cache/eqntk/peer-venvs/<name>``, outside
the repository) made on first use, and runs in a subprocess with that venv's Python. They are
never dependencies of eqntk.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import venv
from typing import Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
VENVS = os.environ.get("EQNTK_PEER_VENVS") or os.path.join(os.path.expanduser("~"), ".cache", "eqntk", "peer-venvs")


def peer_python(name: str, requirements: list[str], log=print) -> str:
    """The Python of the peer venv ``name``, created with ``requirements`` if missing (idempotent).

    The requirements are recorded in ``<venv>/eqntk-requirements.json``; a venv made for other
    requirements is rebuilt.
    """
    root = os.path.join(VENVS, name)
    py = os.path.join(root, "bin", "python")
    stamp = os.path.join(root, "eqntk-requirements.json")
    if os.path.exists(py) and os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == list(requirements):
                return py
    log(f"making the peer venv {root} ({' '.join(requirements)}) ...")
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    subprocess.run([py, "-m", "pip", "install", "-q", *requirements], check=True)
    with open(stamp, "w") as f:
        json.dump(list(requirements), f)
    return py


def run_peer(python: str, script: str, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run ``script`` (a path under benchmarks/peers) with the peer's Python; raise with its stderr on failure."""
    res = subprocess.run([python, os.path.join(HERE, "peers", script), *map(str, args)], capture_output=True,
                         text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{script} failed (rc {res.returncode}):\n{res.stderr[-4000:]}")
    return res


def run_worker(cmd: list[str], key: Optional[dict] = None, timeout: Optional[float] = None) -> dict:
    """Run ``cmd`` (a benchmark calling itself as a worker) and parse the JSON on its last stdout line.

    With ``key``, a timeout or a failure returns ``{**key, "error": ...}`` (the timeout, or the last line
    of stderr); without, they raise.
    """
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if key is None:
            raise
        return {**key, "error": f"timeout after {timeout} s"}
    if out.returncode != 0:
        if key is None:
            raise RuntimeError(f"worker failed (rc {out.returncode}):\n{out.stderr[-3000:]}")
        return {**key, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, GB (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def time_calls(call: Callable[[], object], repeats: int, long_run: float) -> tuple[float, list[float], float]:
    """Seconds of ``call()``: the first (compiling) call, the later ones and their median.

    Calls again (at least once) until ``repeats`` later calls, or until one more would take the later
    calls past ``long_run`` seconds.
    """
    def once():
        t = time.perf_counter()
        call()
        return time.perf_counter() - t

    first = once()
    times = [once()]
    while len(times) < repeats and sum(times) + times[0] < long_run:
        times.append(once())
    return first, times, statistics.median(times)


def load_average() -> list[float]:
    """``os.getloadavg()`` (1, 5, 15 min): how busy the machine was while a benchmark ran."""
    return [round(v, 2) for v in os.getloadavg()]


def python_version() -> str:
    return sys.version.split()[0]


def matmul_peak(dtype: str = "float32", n: int = 2048, repeats: int = 3) -> float:
    """The machine's measured matmul rate, FLOP/s: best of ``repeats`` square ``n × n`` ``jnp.matmul``s (after a warm-up)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def xla_flops(f, *args) -> tuple[float, bool]:
    """``(flops, loops)``: XLA's cost analysis of the jitted ``f`` at ``args``, and whether the compiled program
    has loops. XLA counts a loop's body once, not once per iteration (a ``lax.map`` of 10 products of 64² matrices
    reports 1/10 of its flops), so with ``loops`` the count is a lower bound."""
    compiled = f.lower(*args).compile()
    c = compiled.cost_analysis()
    c = c[0] if isinstance(c, (list, tuple)) else c
    return float(c.get("flops", float("nan"))), " while(" in compiled.as_text()


def memory_bandwidth(n: int = 1 << 25, repeats: int = 5) -> dict:
    """The machine's measured memory bandwidth, bytes/s, on ``n`` float64 elements (256 MB by default).

    ``stream``: ``y = 2x + 1`` into a new array (read + write, 16 B per element, the pattern of a kernel
    layer: read its input kernels, write its outputs); ``read``: ``sum(x)`` (8 B per element). Best of
    ``repeats`` after a warm-up.
    """
    import time

    import jax
    import jax.numpy as jnp

    x = jnp.ones(n, jnp.float64) if jax.config.jax_enable_x64 else jnp.ones(2 * n, jnp.float32)
    nbytes = x.size * x.dtype.itemsize
    out = {}
    for name, f, moved in (("stream", jax.jit(lambda a: 2 * a + 1), 2 * nbytes), ("read", jax.jit(jnp.sum), nbytes)):
        jax.block_until_ready(f(x))
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            jax.block_until_ready(f(x))
            best = min(best, time.perf_counter() - t)
        out[name] = moved / best
    return out


def write_result(path: str, result: dict) -> None:
    """Write a benchmark's result JSON (folders made as needed) and say where, relative to here."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwrote {os.path.relpath(path)}")
