"""LAPACK's threaded Cholesky (SciPy's OpenBLAS ``potrf``) against eqntk's blocked one on a large Gram.

    python benchmarks/openblas_potrf.py [--n 28000] [--threads 2 1] [--methods lapack blocked] \\
        [--out benchmarks/results/openblas_potrf.json]

Each case factorises ``A = I + J/2`` (``n × n``, float64, positive definite, ``A⁻¹`` in closed form:
``I − J/(2 + n)``) in place in a fresh subprocess with ``OPENBLAS_NUM_THREADS`` set, then solves
``A x = 1`` and compares with the closed form ``x = 2/(2 + n)``. A crash of the subprocess is recorded
with its signal, not raised:

* ``lapack``: ``scipy.linalg.cho_factor(overwrite_a=True)``, one ``potrf`` call on the whole matrix;
* ``blocked``: :func:`eqntk.linalg.cholesky_inplace` (``potrf`` on ``CHOLESKY_BLOCK`` diagonal blocks,
  triangular solves and matrix products between them) and ``cho_solve``.

Found at stop 30: the N = 1,000 MD17 energy-and-force fit (28,000 rows) died with SIGSEGV in OpenBLAS
0.3.30's ``dgemm_oncopy`` inside ``potrf`` (2 threads); one thread, or blocks, do not crash.
Memory: one matrix (``8 n²`` bytes, 6.3 GB at 28,000) per subprocess, one subprocess at a time.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # (the float64 matmul peak)

WORKER = r"""
import json, sys, time
import numpy as np, scipy.linalg
n, method = int(sys.argv[1]), sys.argv[2]
if method == "blocked":
    from eqntk import linalg
a = np.full((n, n), 0.5)
a.flat[::n + 1] += 1.0
t = time.perf_counter()
if method == "lapack":
    c = scipy.linalg.cho_factor(a.T, lower=False, overwrite_a=True, check_finite=False)
else:
    assert linalg.cholesky_inplace(a)
    c = (a.T, False)
seconds = time.perf_counter() - t
x = scipy.linalg.cho_solve(c, np.ones(n), check_finite=False)
print(json.dumps({"seconds": seconds, "max_rel_error": float(np.max(np.abs(x * (2 + n) / 2 - 1)))}))
"""


def run_case(n: int, method: str, threads: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    p = subprocess.run([sys.executable, "-c", WORKER, str(n), method], env=env, capture_output=True, text=True)
    row = {"n": n, "method": method, "threads": threads, "returncode": p.returncode}
    if p.returncode == 0:
        row.update(json.loads(p.stdout.strip().splitlines()[-1]))
        row["outcome"] = "ok"
    else:
        row["outcome"] = (f"killed by {signal.Signals(-p.returncode).name}" if p.returncode < 0
                          else f"exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[28000])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--methods", nargs="+", default=["lapack", "blocked"], choices=["lapack", "blocked"])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "openblas_potrf.json"))
    args = ap.parse_args()
    import numpy as np
    import scipy

    from eqntk import linalg

    openblas = [c for c in scipy.show_config(mode="dicts")["Build Dependencies"]["lapack"].get(
        "openblas configuration", "").split() if c[:1].isdigit()][:1]
    print(f"SciPy {scipy.__version__}, OpenBLAS {openblas}, block {linalg.CHOLESKY_BLOCK}, "
          f"load {harness.load_average()}")
    print(f"{'n':>7} {'method':>8} {'threads':>7} {'seconds':>8} {'GFLOP/s':>8} {'max rel err':>11}  outcome")
    rows, t0 = [], time.time()
    for n in args.n:
        for threads in args.threads:
            for method in args.methods:  # interleaved: both methods at each setting, one after the other
                row = run_case(n, method, threads)
                row["load"] = harness.load_average()
                if "seconds" in row:
                    row["gflops"] = n**3 / 3 / row["seconds"] / 1e9
                rows.append(row)
                print(f"{n:7d} {method:>8} {threads:7d} {row.get('seconds', float('nan')):8.1f} "
                      f"{row.get('gflops', float('nan')):8.1f} {row.get('max_rel_error', float('nan')):11.1e}  "
                      f"{row['outcome']}", flush=True)
    peak = harness.matmul_peak("float64")
    print(f"float64 matmul peak (jax, 2048²): {peak / 1e9:.1f} GFLOP/s")
    harness.write_result(args.out, {
        "description": "potrf of SciPy's OpenBLAS on the whole matrix vs eqntk.linalg.cholesky_inplace (blocked), "
                       "A = I + J/2 in place, each case in its own subprocess",
        "scipy": scipy.__version__, "numpy": np.__version__, "openblas": openblas,
        "cholesky_block": linalg.CHOLESKY_BLOCK, "cpu_count": os.cpu_count(), "matmul_peak_gflops": peak / 1e9,
        "rows": rows, "wall_s": time.time() - t0, "date": time.strftime("%Y-%m-%d %H:%M:%S")})


if __name__ == "__main__":
    main()
