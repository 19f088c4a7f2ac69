"""neural-tangents' CNN kernel, run in its own venv (benchmarks/harness.py); imports nothing of eqntk.

    python nt_cnn_worker.py IN.npz OUT.npz PADDING

IN: ``x`` (N, H, W, C) images. Network: Conv(8, 3×3, PADDING) → Relu → Conv(8, 3×3, PADDING) → Relu →
GlobalAvgPool → Dense(1), W_std = 1, no biases, float64, ``kernel_fn(x, None, ('nngp', 'ntk'))`` jitted.
OUT: ``nngp``, ``ntk`` (N, N); ``seconds`` of the timed call after a warm-up call, ``first_seconds``,
``peak_rss_gb`` and ``rss_after_imports_gb`` of this process.
"""

import resource
import sys
import time

import numpy as np
import jax

jax.config.update("jax_enable_x64", True)
from neural_tangents import stax  # noqa: E402


def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main():
    inp, out, padding = sys.argv[1:4]
    x = np.load(inp)["x"]
    base = rss_gb()
    _, _, kernel_fn = stax.serial(stax.Conv(8, (3, 3), padding=padding), stax.Relu(),
                                  stax.Conv(8, (3, 3), padding=padding), stax.Relu(),
                                  stax.GlobalAvgPool(), stax.Dense(1))
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    t = time.perf_counter()
    jax.block_until_ready(kernel_fn(x, None, get=("nngp", "ntk")))
    first = time.perf_counter() - t
    t = time.perf_counter()
    k = jax.block_until_ready(kernel_fn(x, None, get=("nngp", "ntk")))
    seconds = time.perf_counter() - t
    np.savez(out, nngp=np.asarray(k.nngp), ntk=np.asarray(k.ntk), seconds=seconds, first_seconds=first,
             peak_rss_gb=rss_gb(), rss_after_imports_gb=base, jax=jax.__version__)


if __name__ == "__main__":
    main()
