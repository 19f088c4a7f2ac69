"""Brute-force planar GCNN kernels for the tests: all |G|² blocks, explicit sums over filter offsets.

Independent of eqntk.planar's reduction to |G| blocks: it builds the group from its own
matrices, composes elements by matrix products, and runs the recursion of DESIGN §3
literally on K((r, t), (r', t')) for tiny images (numpy, float64).
"""

from __future__ import annotations

import numpy as np

ROT = np.array([[0, 1], [-1, 0]])
FLIP = np.array([[1, 0], [0, -1]])


def generate(name: str) -> list[np.ndarray]:
    """The point group as a set of integer matrices (any order)."""
    gens = {"trivial": [], "p2": [ROT @ ROT], "p4": [ROT], "p4m": [ROT, FLIP]}[name]
    els = [np.eye(2, dtype=int)]
    changed = True
    while changed:
        changed = False
        for a in list(els):
            for g in gens:
                b = a @ g
                if not any(np.array_equal(b, c) for c in els):
                    els.append(b)
                    changed = True
    return els


def index_of(mats, A) -> int:
    return next(i for i, B in enumerate(mats) if np.array_equal(A, B))


def relu(k, v1, v2, t):
    s = np.sqrt(np.maximum(v1 * v2 - k**2, 0.0))
    th = np.arctan2(s, k)
    return (s + (np.pi - th) * k) / (2 * np.pi), None if t is None else t * (np.pi - th) / (2 * np.pi)


def erf(k, v1, v2, t):
    d = (1 + 2 * v1) * (1 + 2 * v2)
    out = 2 / np.pi * np.arcsin(2 * k / np.sqrt(d))
    return out, None if t is None else t * 4 / np.pi / np.sqrt(d - 4 * k**2)


ACT = {"relu": relu, "erf": erf}


def _valid_index(pos, shape, padding):
    """Integer positions (…, 2) → (i, j, inside) under the padding rule."""
    H, W = shape
    i, j = pos[..., 0], pos[..., 1]
    if padding == "CIRCULAR":
        return i % H, j % W, np.ones(i.shape, bool)
    inside = (i >= 0) & (i < H) & (j >= 0) & (j < W)
    if padding == "VALID":
        assert inside.all()
    return np.clip(i, 0, H - 1), np.clip(j, 0, W - 1), inside


def _grid(H, W, q, padding):
    """Output positions in input coordinates: (Ho, Wo, 2)."""
    r = (q - 1) // 2
    off = r if padding == "VALID" else 0
    Ho, Wo = (H - 2 * r, W - 2 * r) if padding == "VALID" else (H, W)
    i, j = np.meshgrid(np.arange(Ho) + off, np.arange(Wo) + off, indexing="ij")
    return np.stack([i, j], -1)


def _offsets(q):
    r = (q - 1) // 2
    return [np.array([a, b]) for a in range(-r, r + 1) for b in range(-r, r + 1)]


def lift(x, xp, mats, q, padding, w2, b2):
    """K[r, t, r', t'] = w²/(q² C) Σ_y Σ_c x(t + A_r y) x'(t' + A_r' y) + b²: (G, Ho, Wo, G, Ho, Wo)."""
    H, W, C = x.shape
    t = _grid(H, W, q, padding)
    G = len(mats)
    feats = []
    for img in (x, xp):
        F = []
        for A in mats:
            cols = []
            for y in _offsets(q):
                i, j, ok = _valid_index(t + A @ y, (H, W), padding)
                cols.append(img[i, j] * ok[..., None])
            F.append(np.stack(cols, -2))  # (Ho, Wo, q², C)
        feats.append(np.stack(F))  # (G, Ho, Wo, q², C)
    K = np.einsum("ahwyc,bHWyc->ahwbHW", feats[0], feats[1]) / (q * q * C)
    return w2 * K + b2


def group_conv(K, mats, q, padding, w2, b2):
    """K'[r, t, r', t'] = w²/(q² G) Σ_s Σ_y K[r s, t + A_r y, r' s, t' + A_r' y] + b²."""
    G, H, W = K.shape[:3]
    t = _grid(H, W, q, padding)  # (Ho, Wo, 2)
    Ho, Wo = t.shape[:2]
    out = np.zeros((G, Ho, Wo, G, Ho, Wo))
    for s in range(G):
        rs = np.array([index_of(mats, A @ mats[s]) for A in mats])
        for y in _offsets(q):
            pos = np.stack([t + A @ y for A in mats])  # (G, Ho, Wo, 2)
            i, j, ok = _valid_index(pos, (H, W), padding)
            I = (rs[:, None, None, None, None, None], i[:, :, :, None, None, None], j[:, :, :, None, None, None],
                 rs[None, None, None, :, None, None], i[None, None, None], j[None, None, None])
            mask = ok[:, :, :, None, None, None] & ok[None, None, None]
            out += K[I] * mask
    return w2 * out / (q * q * G) + b2


def _act_all(K, T, f):
    """Apply the nonlinearity to the three pair families, with the variances of each input's pixels."""
    G, H, W = K["xy"].shape[:3]
    n = G * H * W
    var = {k: np.diag(K[k].reshape(n, n)).reshape(G, H, W) for k in ("xx", "yy")}
    out_k, out_t = {}, {}
    for key, (va, vb) in {"xy": ("xx", "yy"), "xx": ("xx", "xx"), "yy": ("yy", "yy")}.items():
        out_k[key], out_t[key] = f(K[key], var[va][:, :, :, None, None, None], var[vb][None, None, None], T[key])
    return out_k, out_t


def kernels(x, xp, group, layers, act, final_act=True, readout_bias=None):
    """NNGP and NTK of one pair (x, x') (W_std = 1 everywhere).

    ``layers`` = [(q, padding, b_std), ...]: the lift, then group convolutions, with ``act`` between them
    (and after the last one when ``final_act``). Returns the blocks (K, Θ) of shape (G, H, W, G, H, W) at the
    end of the stack, and the pooled (K, Θ) after GroupPool → Dense(b_std=readout_bias).
    """
    mats = generate(group) if isinstance(group, str) else group
    f = ACT[act]
    pairs = {"xy": (x, xp), "xx": (x, x), "yy": (xp, xp)}
    K, T = {}, {}
    for depth, (q, padding, b) in enumerate(layers):
        b2 = 0.0 if b is None else b * b
        if depth == 0:
            for key, (a, c) in pairs.items():
                K[key] = lift(a, c, mats, q, padding, 1.0, b2)
                T[key] = K[key].copy()
            continue
        Ka, Ta = _act_all(K, T, f)
        for key in pairs:
            K[key] = group_conv(Ka[key], mats, q, padding, 1.0, b2)
            T[key] = K[key] + group_conv(Ta[key], mats, q, padding, 1.0, 0.0)
    if final_act:
        K, T = _act_all(K, T, f)
    rb2 = 0.0 if readout_bias is None else readout_bias**2
    kp = K["xy"].mean() + rb2  # GroupPool (mean over both arguments) → Dense
    tp = kp + T["xy"].mean()
    return (K["xy"], T["xy"]), (kp, tp)
