"""Prototype, measured: the energy-force kernel blocks of the SO(3) NNGP/NTK by Fourier-side second derivatives.

    python benchmarks/md17_force_kernel_fourier.py [--osf 8 6] [--kinds nngp ntk] [--reps 3] \
        [--out benchmarks/results/md17_force_kernel_fourier.json]

Not library code yet. For the `eqntk qm9` network (S2ConvSO3 -> Rbf -> SO3Pool -> Dense) on MD17 ethanol
(the embedded conformations), it computes the blocks (ee, ef, fe, ff) of a 4 x 4 tile of conformation pairs
both by eqntk.forces' autodiff path (27 forward tangents through a reverse pass, every tangent through the
pool's quadrature grid) and by the contractions below (one analysis of each pointwise derivative on the grid
per atom pair, then tangent algebra on 84 Wigner coefficients), checks that they agree (max |difference| /
max |entry| per block) and times both, interleaved in one process.

kappa(x, x') = sum_g w_g Psi(B(g), q, q'),  B(g) = s sum_{l,c} x_l^T D^l(g) x'_l (degrees l < 4, 84 Wigner
entries), q = s|x|^2, q' = s|x'|^2, s = W^2/(4 pi C).  Psi = Dense(Rbf(.)) on (B, q, q') (NNGP or NTK).

d2 kappa / dR_a dR'_b = p_a^T Phi q_b + s xd_a . A_B . xd'_b + (p_a . A_Bq') qd'_b + qd_a (q_b . A_qB)
                         + qd_a qd'_b sum w Psi_qq'
with p_a = s vec_l(xd_a,l x'_l^T), q_b = s vec_l(x_l xd'_b,l^T), A_X = sum_g w Psi_X(g) D4(g) (84),
Phi = sum_g w Psi_BB D4 D4^T = T (sum_g w Psi_BB D6(g)) with the fixed 7056x455 (sparse) linearisation T of
D4 D4^T in the degree <= 6 Wigner entries D6.

Variants (--variants analysis:T:pointwise): the default "sep:cg:g" / "sep:cg:c" use eqntk's separable analysis
(so3.transform.from_grid) for sum_g w f D6, Phi from the rank-one (real Clebsch-Gordan) factors of T's
(l1, l2, L) blocks, per-element-group GEMMs with the tangent sums over atom i done before contracting with
atom j's tangents; ":g" takes the pointwise derivatives of Dense(Rbf) by elementwise autodiff (generic),
":c" uses Rbf's closed form (all derivatives = c0 exp(-g(q+q'-2B)) poly(B): one exp, one or two analyses).
"""
import argparse
import math
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import eqntk.data as D  # noqa: E402
from eqntk.experiments.common import environment_info, write_json  # noqa: E402
from eqntk.core.pointwise import AffineMap, SinMap  # noqa: E402
from eqntk.experiments import qm9  # noqa: E402
from eqntk.forces import _tile_program, conformation_kernel  # noqa: E402
from eqntk.so3.quadrature import grid_bandlimit_for, pool_rule, so3_grid  # noqa: E402
from eqntk.so3.transform import from_grid  # noqa: E402
from eqntk.so3.wigner import unpad_blocks, wigner_D_padded  # noqa: E402

L_IN = 4
N4 = 84     # sum_{l<4} (2l+1)^2
N6 = 455    # sum_{l<7} (2l+1)^2
GAMMA = 0.5
W_STD = 1.0


# ----------------------------------------------------------------------------- tables
def wigner_packed(L, grid):
    """(G, sum (2l+1)^2) packed real Wigner entries at the grid points, weights (G,)."""
    a, b, c = grid.euler_angles()
    Dp = wigner_D_padded(L, a.ravel(), b.ravel(), c.ravel(), xp=np)
    return np.asarray(unpad_blocks(Dp)), grid.weights().ravel()


def t_matrix():
    """T (7056, 455): vec(D4(g) D4(g)^T) = T D6(g) for every g (orthogonality on an exact grid)."""
    g7 = so3_grid(7)                      # exact to degree 12 = 6 + 6
    D6, w = wigner_packed(7, g7)
    D4 = D6[:, :N4]
    ls = np.concatenate([np.full((2 * l + 1) ** 2, l) for l in range(7)])
    E = (D4[:, :, None] * D4[:, None, :]).reshape(D6.shape[0], -1)
    T = (E * w[:, None]).T @ D6 * (2 * ls + 1)[None, :]
    T[np.abs(T) < 1e-13] = 0.0
    # check at random rotations
    rng = np.random.default_rng(0)
    al, ga = rng.uniform(0, 2 * np.pi, (2, 50))
    be = np.arccos(rng.uniform(-1, 1, 50))
    Dr = np.asarray(unpad_blocks(wigner_D_padded(7, al, be, ga, xp=np)))
    Er = (Dr[:, :N4, None] * Dr[:, None, :N4]).reshape(50, -1)
    err = np.max(np.abs(Er - Dr @ T.T))
    return T, err


def degree_slices():
    return [slice(l * l, (l + 1) ** 2) for l in range(L_IN)]


# ----------------------------------------------------------------------------- Psi and its derivatives
def psi_fn(kind):
    sin = SinMap(math.sqrt(2.0), math.sqrt(2.0 * GAMMA), math.pi / 4)
    dense = AffineMap(W_STD, None)

    def f(B, q, qp):
        n, t = sin.kernel(B, B, q, qp)          # lift: Theta = psi
        n2, t2 = dense.kernel(n, t, None, None)  # pool (linear) commutes; Dense after it
        return n2 if kind == "nngp" else t2

    return f


def psi_derivs(kind):
    f = psi_fn(kind)
    g = lambda i: jax.grad(f, argnums=i)  # noqa: E731
    fB, fq, fqp = g(0), g(1), g(2)
    d = {"psi": f, "B": fB, "q": fq, "qp": fqp,
         "BB": jax.grad(fB, 0), "Bqp": jax.grad(fB, 2), "qB": jax.grad(fq, 0), "qqp": jax.grad(fq, 2)}
    return {k: jnp.vectorize(v) for k, v in d.items()}


# ----------------------------------------------------------------------------- the Fourier path
def cg_factors(T):
    """Per (l1, l2): (Q1 (k1, k2, k1 k2), Q2 (k1, k2, k1 k2), idx (k1 k2, k1 k2)) with
    Phi^{l1 l2}[m1 n1, m2 n2] = sum_{M N} Q1[m1, m2, M] Bd[M, N] Q2[n1, n2, N], Bd = blockdiag_L(A6 degree-L block)
    (idx into A6 with 455 = a zero slot). The T blocks are rank one in ((m1 m2 M), (n1 n2 N)) (real Clebsch-Gordan)."""
    offs4 = np.cumsum([0] + [(2 * l + 1) ** 2 for l in range(4)])
    offs6 = np.cumsum([0] + [(2 * l + 1) ** 2 for l in range(7)])
    T4 = T.reshape(N4, N4, N6)
    out, worst = {}, 0.0
    for l1 in range(4):
        for l2 in range(4):
            k1, k2 = 2 * l1 + 1, 2 * l2 + 1
            Tb = T4[offs4[l1]:offs4[l1 + 1], offs4[l2]:offs4[l2 + 1]].reshape(k1, k1, k2, k2, N6)
            Q1s, Q2s = [], []
            idx = np.full((k1 * k2, k1 * k2), N6)
            o = 0
            for L in range(abs(l1 - l2), l1 + l2 + 1):
                K = 2 * L + 1
                TbL = Tb[..., offs6[L]:offs6[L + 1]].reshape(k1, k1, k2, k2, K, K)
                u, sv, vt = np.linalg.svd(TbL.transpose(0, 2, 4, 1, 3, 5).reshape(k1 * k2 * K, -1))
                worst = max(worst, sv[1] / sv[0] if sv.size > 1 else 0.0)
                Q1s.append((u[:, 0] * np.sqrt(sv[0])).reshape(k1, k2, K))
                Q2s.append((vt[0] * np.sqrt(sv[0])).reshape(k1, k2, K))
                idx[o:o + K, o:o + K] = offs6[L] + np.arange(K * K).reshape(K, K)
                o += K
            out[l1, l2] = (np.concatenate(Q1s, -1), np.concatenate(Q2s, -1), idx)
    return out, worst


LS6 = np.concatenate([np.full((2 * l + 1) ** 2, l) for l in range(7)])


def make_fourier_tile(z, env, osf, kind, analysis="sep", tmode="cg", closed=False):
    """The blocks ``(ee, ef, fe, ff)`` of a tile, per element group as (I, i, J, j) GEMMs; ``closed``: Rbf's closed form."""
    z = np.asarray(z)
    groups = [np.nonzero(z == e)[0] for e in np.unique(z)]
    B = grid_bandlimit_for(L_IN, 1, osf, True)
    assert pool_rule(L_IN, osf, True) is None
    grid = so3_grid(B)
    D6n, wn = wigner_packed(7, grid)
    D6 = jnp.asarray(D6n)
    D4 = D6[:, :N4]
    w = jnp.asarray(wn)
    T, terr = t_matrix()
    iu, ju = np.triu_indices(N4)
    Tsym = jnp.asarray(T.reshape(N4, N4, N6)[iu, ju])          # (3570, 455)
    sym_index = np.zeros((N4, N4), np.int64)
    sym_index[iu, ju] = np.arange(iu.size)
    sym_index[ju, iu] = np.arange(iu.size)
    sym_index = jnp.asarray(sym_index.ravel())
    Tj = jnp.asarray(T)
    cgf, cg_worst = cg_factors(T)
    sin = SinMap(math.sqrt(2.0), math.sqrt(2.0 * GAMMA), math.pi / 4)
    g_, c0 = sin.b**2 / 2, sin.a**2 / 2 * W_STD**2       # E = exp(-g (q + q' - 2B)); Rbf: g = gamma, c0 = 1
    der = psi_derivs(kind)
    shape3 = grid.shape
    inv2l1 = jnp.asarray(1.0 / (2 * LS6 + 1))
    sls = degree_slices()
    offs = np.cumsum([0] + [(2 * l + 1) ** 2 for l in range(L_IN)])

    def analyse(vals, n):
        if analysis == "dense":
            return vals @ D6[:, :n]
        Lb = 7 if n == N6 else 4
        return unpad_blocks(from_grid(vals.reshape(vals.shape[:-1] + shape3), B, Lb)) * inv2l1[:n]

    def phi_of(A6):
        if tmode == "dense":
            return (A6 @ Tj.T).reshape(A6.shape[:-1] + (N4, N4))
        if tmode == "cg":
            A6z = jnp.concatenate([A6, jnp.zeros(A6.shape[:-1] + (1,), A6.dtype)], axis=-1)
            rows = []
            for l1 in range(L_IN):
                row = []
                for l2 in range(L_IN):
                    Q1, Q2, idx_ = cgf[l1, l2]
                    k1, k2 = Q1.shape[:2]
                    Bd = A6z[..., idx_]                                              # (.., K, K)
                    X = jnp.einsum("...MN,uvN->...Muv", Bd, jnp.asarray(Q2))         # (.., K, k1, k2)
                    Ph = jnp.einsum("xyM,...Muv->...xuyv", jnp.asarray(Q1), X)      # (.., m1, n1, m2, n2)
                    row.append(Ph.reshape(Ph.shape[:-4] + (k1 * k1, k2 * k2)))
                rows.append(jnp.concatenate(row, axis=-1))
            return jnp.concatenate(rows, axis=-2)
        return (A6 @ Tsym.T)[..., sym_index].reshape(A6.shape[:-1] + (N4, N4))

    def per_conf(R):
        x = env(R)
        xd = jax.jacfwd(env)(R)
        return x, jnp.moveaxis(xd.reshape(xd.shape[:3] + (-1,)), -1, 1)   # (n, 16, C), (n, 3n, 16, C)

    def tile(R1, R2):
        X1, Xd1 = jax.vmap(per_conf)(R1)
        X2, Xd2 = jax.vmap(per_conf)(R2)
        C = X1.shape[-1]
        s = W_STD**2 / (4 * np.pi * C)
        b1, b2 = R1.shape[0], R2.shape[0]
        G = [(X1[:, g], Xd1[:, g], X2[:, g], Xd2[:, g]) for g in groups]
        # grid part on all pairs at once
        Ms = []
        for x1, _, x2, _ in G:
            M = jnp.concatenate([jnp.einsum("Iimc,Jjnc->IiJjmn", x1[..., sl, :], x2[..., sl, :]).reshape(
                x1.shape[:2] + x2.shape[:2] + (-1,)) for sl in sls], axis=-1) * s
            Ms.append(M)
        q1 = [s * jnp.sum(x1**2, axis=(-2, -1)) for x1, _, _, _ in G]
        q2 = [s * jnp.sum(x2**2, axis=(-2, -1)) for _, _, x2, _ in G]
        qq = jnp.concatenate([jnp.broadcast_to(a[:, :, None, None], M.shape[:-1]).reshape(-1) for a, M in zip(q1, Ms)])
        qqp = jnp.concatenate([jnp.broadcast_to(a[None, None], M.shape[:-1]).reshape(-1) for a, M in zip(q2, Ms)])
        sizes = [int(np.prod(M.shape[:-1])) for M in Ms]
        Mall = jnp.concatenate([M.reshape(-1, N4) for M in Ms])  # (pairs, 84)
        Bg = Mall @ D4.T
        qq, qqp = qq[:, None], qqp[:, None]
        if closed:
            # Rbf closed form: every Psi derivative is c0 E poly(B), E = exp(-g(q + q' - 2B)) (one exp per point)
            E = jnp.exp(-g_ * (qq + qqp - 2 * Bg))
            if kind == "nngp":
                AE = analyse(E if analysis != "dense" else E * w, N6)           # (pairs, 455)
                e0 = AE[..., 0]                                                  # sum_g w E (D^0 = 1)
                A6 = 4 * g_**2 * c0 * AE
                AB = 2 * g_ * c0 * AE[..., :N4]
                ABqp = AqB = -g_ * AB
                sums = {"psi": c0 * e0, "q": -g_ * c0 * e0, "qp": -g_ * c0 * e0, "qqp": g_**2 * c0 * e0}
            else:
                EE = jnp.stack([E, E * Bg])
                AEs = analyse(EE if analysis != "dense" else EE * w, N6)
                AE, AEB = AEs[0], AEs[1]
                A6 = 4 * g_**2 * c0 * (3 * AE + 2 * g_ * AEB)
                AB = 2 * g_ * c0 * (2 * AE[..., :N4] + 2 * g_ * AEB[..., :N4])
                ABqp = AqB = -g_ * AB
                psi0 = c0 * (AE[..., 0] + 2 * g_ * AEB[..., 0])
                sums = {"psi": psi0, "q": -g_ * psi0, "qp": -g_ * psi0, "qqp": g_**2 * psi0}
        else:
            v = {k: der[k](Bg, qq, qqp) for k in der}
            if analysis == "dense":
                v = {k: a * w for k, a in v.items()}
            else:
                v.update({k: v[k] * w for k in ("psi", "q", "qp", "qqp")})
            sums = {k: jnp.sum(v[k], axis=-1) for k in ("psi", "q", "qp", "qqp")}
            A6 = analyse(v["BB"], N6)
            AB, ABqp, AqB = (analyse(v[k], N4) for k in ("B", "Bqp", "qB"))
        Phi = phi_of(A6)
        ee = ef = fe = ff = 0.0
        cuts = np.cumsum([0] + sizes)
        for gi, (x1, xd1, x2, xd2) in enumerate(G):
            sh = Ms[gi].shape[:-1]                                # (b1, g, b2, g)
            cut = lambda a: a[cuts[gi]:cuts[gi + 1]].reshape(sh + a.shape[1:])  # noqa: E731
            sP, sq, sqp, sqq = (cut(sums[k]) for k in ("psi", "q", "qp", "qqp"))
            aB, aBqp, aqB, phi = cut(AB), cut(ABqp), cut(AqB), cut(Phi)
            qd1 = 2 * s * jnp.einsum("Iilc,Iialc->Iia", x1, xd1)
            qd2 = 2 * s * jnp.einsum("Jjlc,Jjblc->Jjb", x2, xd2)
            p = s * jnp.concatenate([jnp.einsum("Iiamc,Jjnc->IiJjamn", xd1[..., sl, :], x2[..., sl, :]).reshape(
                sh + (xd1.shape[2], -1)) for sl in sls], axis=-1)                    # (b1, g, b2, g, 27, 84)
            ee = ee + jnp.einsum("IiJj->IJ", sP)
            fe = fe - jnp.einsum("IiJjae,IiJje->IJa", p, aB) - jnp.einsum("Iia,IiJj->IJa", qd1, sq)
            ef = ef - jnp.einsum("Jjb,IiJj->IJb", qd2, sqp)
            U = jnp.einsum("IiJjae,IiJjef->IiJjaf", p, phi)                 # p_a^T Phi, (.., 27, 84)
            u3 = jnp.einsum("IiJjae,IiJje->IiJja", p, aBqp)
            t = jnp.einsum("IiJja,Jjb->IJab", u3, qd2)
            t = t + jnp.einsum("Iia,Jjb,IiJj->IJab", qd1, qd2, sqq)
            for l, sl in enumerate(sls):
                k, o = 2 * l + 1, slice(offs[l], offs[l + 1])
                x1l, xd1l, xd2l = x1[..., sl, :], xd1[..., sl, :], xd2[..., sl, :]
                # t1: sum_ij U_ij[a, (l m n)] s x1_i[l m c] xd2_j[b l n c]: contract x1_i and sum over i first
                Ul = U[..., o].reshape(sh + (-1, k, k))
                V = jnp.einsum("IiJjamn,Iimc->IJjanc", Ul, x1l)
                t = t + s * jnp.einsum("IJjanc,Jjbnc->IJab", V, xd2l)
                # t2: sum_ij s xd1_i A_ij xd2_j, summing over i first
                Al = aB[..., o].reshape(sh + (k, k))
                Zs = jnp.einsum("Iiamc,IiJjmn->IacJjn", xd1l, Al)
                t = t + s * jnp.einsum("IacJjn,Jjbnc->IJab", Zs, xd2l)
                # ef and t4: sum_i s x1_i[l m c] A_ij[m n], then against xd2_j
                Hb = jnp.einsum("Iimc,IiJjmn->IJjnc", x1l, Al)
                ef = ef - s * jnp.einsum("IJjnc,Jjbnc->IJb", Hb, xd2l)
                Aq = aqB[..., o].reshape(sh + (k, k))
                H4 = jnp.einsum("Iia,Iimc,IiJjmn->IJjnca", qd1, x1l, Aq)
                t = t + s * jnp.einsum("IJjnca,Jjbnc->IJab", H4, xd2l)
            ff = ff + t
        return ee, ef, fe, ff

    info = dict(B=B, G=grid.size, T_err=float(terr), cg_rank1=float(cg_worst), analysis=analysis, T=tmode,
                pointwise="closed" if closed else "autodiff")
    return jax.jit(tile), info


# ----------------------------------------------------------------------------- main
def timeit(f, args, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--osf", type=float, nargs="+", default=[8.0, 6.0])
    ap.add_argument("--kinds", nargs="+", default=["nngp", "ntk"])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-autodiff", action="store_true")
    ap.add_argument("--variants", nargs="+", default=["sep:cg:g", "sep:cg:c"],
                    help="analysis:T:pointwise; analysis dense|sep, T dense|sym|cg, pointwise g (elementwise autodiff "
                         "of the pointwise derivatives) or c (Rbf's closed forms)")
    ap.add_argument("--out", default="benchmarks/results/md17_force_kernel_fourier.json")
    args = ap.parse_args()
    rows = []
    d = D.load_md17()
    z, R = d["z"], np.asarray(d["R"], np.float64)
    spec = qm9.QM9Config().environment_spec()
    env0 = D.environment_fn(z, spec)
    scale = 1.0 / math.sqrt(qm9.lift_variance(np.concatenate([np.asarray(env0(r)) for r in R[:20]])))
    env = lambda r: env0(r) * scale  # noqa: E731
    R1, R2 = jnp.asarray(R[:4]), jnp.asarray(R[4:8])
    npairs = R1.shape[0] * R2.shape[0]
    print(f"scale {scale:.4f}; tile {R1.shape[0]}x{R2.shape[0]} conformation pairs", flush=True)
    for osf in args.osf:
        kf = qm9.networks(qm9.QM9Config(oversampling=osf, kernels=("so3",), gamma=GAMMA, w_std=W_STD), 0)["so3"][0]
        for kind in args.kinds:
            k = conformation_kernel(kf, z, env, get=kind)
            fouriers = {}
            print(f"\n== oversampling {osf}, {kind}", flush=True)
            for var in args.variants:
                an, tm, pw = var.split(":")
                if an not in ("dense", "sep") or tm not in ("dense", "sym", "cg") or pw not in ("g", "c"):
                    raise ValueError(f"--variants: {var!r} is not analysis:T:pointwise (see --help)")
                f, info = make_fourier_tile(z, env, osf, kind, an, tm, closed=pw == "c")
                t0 = time.perf_counter()
                of = jax.block_until_ready(f(R1, R2))
                print(f"fourier {var} {info} compile+run {time.perf_counter() - t0:.1f} s", flush=True)
                fouriers[var] = (f, of)
            if not args.no_autodiff:
                auto = _tile_program(k)
                t0 = time.perf_counter()
                oa = jax.block_until_ready(auto(R1, R2))
                print(f"autodiff compile+run {time.perf_counter() - t0:.1f} s", flush=True)
                for var, (_, of) in fouriers.items():
                    errs, worst, rel = [], 0.0, {}
                    for name, a, b in zip(("ee", "ef", "fe", "ff"), oa, of):
                        a, b = np.asarray(a), np.asarray(b)
                        e = np.max(np.abs(a - b)) / np.max(np.abs(a))
                        worst, rel[name] = max(worst, e), float(e)
                        errs.append(f"{name} {e:.2e} (max|.| {np.max(np.abs(a)):.3g})")
                    print(f"  {var} max rel err vs autodiff: " + ", ".join(errs) + ("  PASS (<= 1e-9)" if worst <= 1e-9 else "  FAIL"))
                    rows.append({"oversampling": osf, "kind": kind, "variant": var, "max_rel_err_vs_autodiff": rel})
            ta, tf = [], {v: [] for v in fouriers}
            for _ in range(args.reps):  # interleaved
                if not args.no_autodiff:
                    ta += timeit(auto, (R1, R2), 1)
                for var, (f, _) in fouriers.items():
                    tf[var] += timeit(f, (R1, R2), 1)
            if ta:
                print(f"  autodiff: {1e3 * np.median(ta) / npairs:.2f} ms/pair  (runs {[round(1e3 * t / npairs, 2) for t in ta]})")
                rows.append({"oversampling": osf, "kind": kind, "variant": "autodiff (eqntk.forces)",
                             "ms_per_pair": 1e3 * float(np.median(ta)) / npairs})
            for var, t in tf.items():
                print(f"  fourier {var}: {1e3 * np.median(t) / npairs:.2f} ms/pair  (runs {[round(1e3 * x / npairs, 2) for x in t]})", flush=True)
                row = {"oversampling": osf, "kind": kind, "variant": var, "ms_per_pair": 1e3 * float(np.median(t)) / npairs}
                if ta:
                    row["speedup_vs_autodiff"] = float(np.median(ta) / np.median(t))
                rows.append(row)
            write_json(args.out, {"experiment": "md17_force_kernel_fourier", "args": vars(args),
                                  "tile": "R[:4] x R[4:8] of the embedded MD17 ethanol conformations, float64",
                                  "results": rows, "load_average_end": harness.load_average(),
                                  "environment": environment_info()})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
