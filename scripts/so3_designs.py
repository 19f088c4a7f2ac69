"""Compute the SO(3) quadrature rules shipped in ``src/eqntk/so3/rules.npz``.

    python scripts/so3_designs.py [--degrees 2 4 ... 12] [--out src/eqntk/so3/rules.npz]

A rule of degree ``t`` is ``N`` rotations ``g_i`` (z-y-z Euler angles, the convention of
:func:`eqntk.so3.wigner.wigner_D_padded`) and positive weights ``w_i`` with

    Σ_i w_i D^J_mn(g_i) = δ_J0        for every J ≤ t and every m, n,

i.e. it integrates every function of Wigner degree ≤ t exactly under the normalised Haar measure.
That is ``M = Σ_{J≤t} (2J+1)²`` real equations in ``4N`` unknowns (three angles and a weight per
point), so ``N`` just above ``M / 4`` points suffice generically, against the
``(2B-1)² B`` points (``B = ⌈t/2⌉ + 1``) of the Euler product grid of the same degree.
The equations are solved by Levenberg-Marquardt (minimum-norm Gauss-Newton steps) from uniformly
random rotations, weights ``w = v²`` (hence ≥ 0), until the residual is at rounding level. The
Jacobian is block-structured (each point moves only its own terms), so it costs ``O(M N)``.

Degrees 2…12 are shipped: they cover the pool after a lift of bandlimit 4 up to oversampling 4
(the QM9 default). Degree 14 (4,495 equations) stalled at a residual of ~7e-3 from one random start
at 7% slack; higher degrees fall back to the product grid. Only even degrees are needed: an integrating layer asks for the exactness ``2B - 2`` of the product
grid of bandlimit ``B`` it replaces (:func:`eqntk.so3.quadrature.pool_rule`). Run once by a developer; the output is committed (package data) and verified by
``tests/test_so3_quadrature.py`` against the Euler product grid.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np


def n_equations(t: int) -> int:
    return sum((2 * J + 1) ** 2 for J in range(t + 1))


def solve_rule(t: int, n_points: int, seed: int = 0, max_iter: int = 400, log=print):
    """``(euler (N, 3), weights (N,), residual)`` of a degree-``t`` rule with ``n_points`` points."""
    import jax
    import jax.numpy as jnp
    from scipy.spatial.transform import Rotation

    from eqntk.so3.wigner import _block_index, wigner_D_padded

    B = t + 1
    ls, ms, ns = _block_index(B)
    sel = np.nonzero(ls >= 1)[0]
    li, mi, ni = ls[sel], ms[sel], ns[sel]

    def d_point(e):  # (3,) -> (M - 1,)
        return wigner_D_padded(B, e[0], e[1], e[2], dtype=jnp.float64)[li, mi, ni]

    D_of = jax.jit(jax.vmap(d_point))
    dD_of = jax.jit(jax.vmap(jax.jacfwd(d_point)))  # (N, M - 1, 3)
    N = n_points

    def residual(E, v):
        w = v**2
        return np.concatenate([w @ np.asarray(D_of(E)), [w.sum() - 1.0]])

    rng = np.random.default_rng(seed)
    q = rng.standard_normal((N, 4))
    E = Rotation.from_quat(q / np.linalg.norm(q, axis=1, keepdims=True)).as_euler("ZYZ")
    v = np.full(N, 1 / math.sqrt(N))
    r = residual(E, v)
    f, lam, t0 = r @ r, 1e-3, time.time()
    history = []
    for it in range(max_iter):
        history.append(f)
        if it >= 40 and f > 0.25 * history[-40]:  # stalled (residual not halved in 40 steps): give up
            break
        D, dD, w = np.asarray(D_of(E)), np.asarray(dD_of(E)), v**2
        J = np.concatenate([(w[:, None, None] * dD).transpose(1, 0, 2).reshape(len(sel), 3 * N),
                            (2 * v)[None, :] * D.T], axis=1)
        J = np.concatenate([J, np.concatenate([np.zeros(3 * N), 2 * v])[None]], axis=0)
        JJ = J @ J.T
        scale = np.trace(JJ) / len(r)
        while True:
            d = -J.T @ np.linalg.solve(JJ + lam * scale * np.eye(len(r)), r)
            E2, v2 = E + d[: 3 * N].reshape(N, 3), v + d[3 * N:]
            r2 = residual(E2, v2)
            if r2 @ r2 < f:
                E, v, r, f = E2, v2, r2, r2 @ r2
                lam = max(lam / 3, 1e-12)
                break
            lam *= 4
            if lam > 1e6:
                break
        if log and it % 10 == 0:
            log(f"  t={t} N={N} it={it} residual={math.sqrt(f):.2e} ({time.time() - t0:.0f} s)")
        if f < 1e-28 or lam > 1e6:
            break
    # canonical angles: alpha, gamma in [0, 2π); beta folded into [0, π] (D depends on β through cos/sin
    # of multiples, and (α, -β, γ) = (α+π, β, γ+π))
    a, b, c = E[:, 0], E[:, 1], E[:, 2]
    b = np.mod(b, 2 * np.pi)
    flip = b > np.pi
    b = np.where(flip, 2 * np.pi - b, b)
    a = np.where(flip, a + np.pi, a)
    c = np.where(flip, c + np.pi, c)
    E = np.stack([np.mod(a, 2 * np.pi), b, np.mod(c, 2 * np.pi)], axis=1)
    w = v**2
    keep = w > 1e-14 * w.max()  # points the solve drove to weight ~0 contribute nothing: drop them
    return E[keep], w[keep] / w[keep].sum(), math.sqrt(f)


def main(argv=None):
    import jax

    jax.config.update("jax_enable_x64", True)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--degrees", type=int, nargs="+", default=[2, 4, 6, 8, 10, 12])
    p.add_argument("--slack", type=float, default=0.07, help="points above M/4, as a fraction")
    p.add_argument("--out", default="src/eqntk/so3/rules.npz")
    a = p.parse_args(argv)
    out = {}
    if os.path.exists(a.out):  # add to (or replace degrees of) the existing file
        with np.load(a.out) as f:
            out = {k: f[k] for k in f.files}
    for t in a.degrees:
        M = n_equations(t)
        for attempt in range(4):
            N = math.ceil(M / 4 * (1 + a.slack * (attempt + 1))) + 1
            E, w, res = solve_rule(t, N, seed=attempt)
            N = len(w)
            if res < 1e-13:
                break
            print(f"t={t}: N={N} did not converge (residual {res:.1e}); more points")
        else:
            raise RuntimeError(f"no rule of degree {t}")
        B = math.ceil(t / 2) + 1
        product = (2 * B - 1) ** 2 * B
        print(f"t={t}: {N} points (Euler product grid {product}), residual {res:.1e}, "
              f"N·w in [{N * w.min():.2e}, {N * w.max():.2f}]", flush=True)
        out[f"t{t}_euler"] = E
        out[f"t{t}_weights"] = w
        np.savez_compressed(a.out, **out)  # after every degree: an interrupted run keeps what it solved
        print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
