r"""Rotated-digits classification with exact CNN, p4 and p4m NTKs.

Data: the 1,797 handwritten digits scikit-learn bundles (8×8, values 0..16, scaled to [0, 1]),
shipped with eqntk (:func:`eqntk.data.default_digits_path`); :func:`load` takes another
``.npz`` with keys ``X``, ``y`` instead.

Networks (``depth`` blocks of convolution + ReLU, 3×3 filters, ``VALID`` padding, then a
global mean and a linear readout):

* ``cnn``: ``Conv → Relu → … → GlobalAvgPool → Dense``;
* ``p4``:  ``Z2ConvP4 → Relu → P4ConvP4 → … → GroupPool → Dense`` (invariant to quarter turns);
* ``p4m``: ``Z2ConvP4M → Relu → P4MConvP4M → … → GroupPool → Dense`` (quarter turns and mirrors).

Protocol: a test set, a validation set and nested training sets are drawn with ``seed``.
Training images are upright (unless ``rotate_train``); validation and test images are rotated
(``rot90``: random multiples of 90°, exact; ``continuous``: uniform angles, bilinear
interpolation). Kernel regression on one-hot labels (MSE) with the NTK; the relative ridge
is chosen by validation accuracy; test accuracy is reported.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np

from ..data.images import default_digits_path
from .common import save_figure, DEFAULT_RIDGES, Timer, environment_info, format_table, padded_kernel, \
    plot_if_available, psd_tolerance, pyplot, select_ridge, write_json, x64_enabled

__all__ = ["DigitsConfig", "DEFAULT_DIGITS_PATH", "NETWORK_LABELS", "load", "network", "run", "print_summary",
           "plot_accuracy", "save"]

DEFAULT_DIGITS_PATH = str(default_digits_path())  # the digits shipped with eqntk (package data)

NETWORK_LABELS = {"cnn": "CNN NTK", "p4": "p4 GCNN NTK", "p4m": "p4m GCNN NTK"}


@dataclasses.dataclass
class DigitsConfig:
    """Settings of :func:`run` (the defaults are those of ``eqntk digits``)."""

    n_train: Sequence[int] = (50, 100, 200)
    n_val: int = 50
    n_test: int = 200
    networks: Sequence[str] = ("cnn", "p4", "p4m")
    rotation: str = "rot90"
    rotate_train: bool = False
    depth: int = 1
    filter_size: int = 3
    padding: str = "VALID"
    ridges: Sequence[float] = DEFAULT_RIDGES
    seed: int = 0
    dtype: str = "float32"
    path: Optional[str] = None
    tile: int = 64
    store: Optional[str] = None
    progress: Optional[bool] = None

    def validate(self):
        n_train = [int(n) for n in self.n_train]
        if not n_train or any(n < 2 for n in n_train):
            raise ValueError(f"n_train must be one or more integers >= 2, got {list(self.n_train)!r}")
        if self.n_val < 1 or self.n_test < 1:
            raise ValueError(f"n_val and n_test must be >= 1, got {self.n_val}, {self.n_test}")
        bad = [n for n in self.networks if n not in NETWORK_LABELS]
        if bad or not self.networks:
            raise ValueError(f"networks must be among {list(NETWORK_LABELS)}, got {list(self.networks)!r}")
        if self.rotation not in ("rot90", "continuous", "none"):
            raise ValueError(f"rotation must be 'rot90', 'continuous' or 'none', got {self.rotation!r}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        self.n_train = tuple(sorted(set(n_train)))


def load(path: Optional[str] = None):
    """The digits as an :class:`eqntk.data.ImageSet`: the ``.npz`` at ``path`` (keys ``X``, ``y``),
    or the copy shipped with eqntk when ``path`` is ``None``."""
    from .. import data as D

    if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"no digits file at {path} (expected an .npz with keys X, y)")
    return D.load_digits(path)


def network(name: str, depth: int = 1, q: int = 3, padding: str = "VALID"):
    """``kernel_fn`` of the ``cnn`` / ``p4`` / ``p4m`` network of the module docstring."""
    from .. import stax

    lift, conv, pool = {
        "cnn": (stax.Conv, stax.Conv, stax.GlobalAvgPool),
        "p4": (stax.Z2ConvP4, stax.P4ConvP4, stax.GroupPool),
        "p4m": (stax.Z2ConvP4M, stax.P4MConvP4M, stax.GroupPool),
    }[name]
    layers = [lift(256, (q, q), padding), stax.Relu()]
    for _ in range(depth - 1):
        layers += [conv(256, (q, q), padding), stax.Relu()]
    layers += [pool(), stax.Dense(1)]
    return stax.serial(*layers)[2]


def _rotate(x: np.ndarray, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from .. import data as D

    if kind == "none":
        return x, np.zeros(x.shape[0])
    return D.random_rotations(x, seed=seed, kind=kind)


def run(cfg: DigitsConfig, log=print) -> dict:
    """Run the digits experiment of ``cfg``; returns the JSON-ready result dict (no files written)."""
    from .. import data as D
    from .. import predict

    cfg.validate()
    if not x64_enabled():
        log("warning: jax_enable_x64 is off; the regressions run in float32")
    timer = Timer()
    ds = load(cfg.path)
    n_max = max(cfg.n_train)
    if n_max + cfg.n_val + cfg.n_test > len(ds):
        raise ValueError(f"the digits have {len(ds)} images, fewer than the {n_max + cfg.n_val + cfg.n_test} "
                         f"requested ({n_max} train + {cfg.n_val} validation + {cfg.n_test} test)")
    test_i, val_i, train_i = D.split_indices(len(ds), [cfg.n_test, cfg.n_val, n_max], seed=cfg.seed)
    dt = np.float32 if cfg.dtype == "float32" else np.float64
    x = ds.x.astype(np.float64) / 16.0
    x_train = x[train_i]
    if cfg.rotate_train and cfg.rotation != "none":
        x_train = _rotate(x_train, cfg.rotation, cfg.seed + 3)[0]
    x_val = _rotate(x[val_i], cfg.rotation, cfg.seed + 1)[0]
    x_test = _rotate(x[test_i], cfg.rotation, cfg.seed + 2)[0]
    x_pool = np.concatenate([x_val, x_train]).astype(dt)
    x_test = x_test.astype(dt)
    y_pool = np.concatenate([ds.y[val_i], ds.y[train_i]])
    y_test = ds.y[test_i]
    n_cls = 10
    val_idx, train_idx = np.arange(cfg.n_val), np.arange(cfg.n_val, cfg.n_val + n_max)
    log(f"digits: {len(ds)} images 8x8; train {n_max} ({'rotated' if cfg.rotate_train else 'upright'}), "
        f"validation {cfg.n_val} and test {cfg.n_test} rotated ({cfg.rotation})")
    tile = min(cfg.tile, x_pool.shape[0])  # one tile shape (one compilation) for both Grams
    rows = []
    acc = lambda p, y: float(np.mean(np.argmax(p, axis=1) == y))  # noqa: E731
    for name in cfg.networks:
        kf = network(name, cfg.depth, cfg.filter_size, cfg.padding)
        log(f"{NETWORK_LABELS[name]}: pool ({x_pool.shape[0]}) x pool, test ({x_test.shape[0]}) x pool")
        store = None if cfg.store is None else os.path.join(cfg.store, name)
        with timer(f"kernel_{name}"):
            k_pool = padded_kernel(kf, x_pool, None, get="ntk", tile=tile, progress=cfg.progress,
                                   store=None if store is None else os.path.join(store, "pool"))["ntk"]
            k_test = padded_kernel(kf, x_test, x_pool, get="ntk", tile=tile, progress=cfg.progress,
                                   store=None if store is None else os.path.join(store, "test"))["ntk"]
        log(f"  {timer.seconds[f'kernel_{name}']:.1f} s")
        with timer("regression"):
            for n in cfg.n_train:
                tr = train_idx[:n]
                y_tr = np.asarray(predict.one_hot(y_pool[tr], n_cls), dtype=np.float64)
                # the test predictions are those of the validated model (its coefficients), not of a refit
                ridge, val_acc, trials, coef = select_ridge(
                    k_pool[np.ix_(tr, tr)], y_tr, k_pool[np.ix_(val_idx, tr)], y_pool[val_idx], acc, cfg.ridges,
                    higher_is_better=True, psd_rtol=psd_tolerance(cfg.dtype), with_coef=True)
                pred = np.asarray(k_test[:, tr], dtype=np.float64) @ coef
                rows.append({"network": name, "n_train": int(n), "accuracy": acc(pred, y_test),
                             "ridge_rel": ridge, "val_accuracy": val_acc, "ridge_trials": trials})
    config = dataclasses.asdict(cfg)
    config["n_train"] = list(cfg.n_train)
    return {"experiment": "digits", "config": config, "results": rows,
            "seconds": {**timer.seconds, "total": timer.total}, "environment": environment_info()}


def summary_table(result: dict) -> str:
    rows = result["results"]
    ns = sorted({r["n_train"] for r in rows})
    table = []
    for net in NETWORK_LABELS:
        rs = [r for r in rows if r["network"] == net]
        if not rs:
            continue
        line = [NETWORK_LABELS[net]]
        for n in ns:
            r = next((r for r in rs if r["n_train"] == n), None)
            s = "-" if r is None else f"{100 * r['accuracy']:.1f}"
            if r is not None and "accuracy_std" in r:
                s += f" ± {100 * r['accuracy_std']:.1f}"
            line.append(s)
        table.append(line)
    rot = result["config"]["rotation"]
    return format_table([f"test accuracy [%], {rot}"] + [f"N={n}" for n in ns], table)


def print_summary(result: dict, log=print):
    log("")
    log(summary_table(result))
    s = result["seconds"]
    log(f"\ntotal {s['total']:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total") + ")")


def plot_accuracy(result: dict, path: str, title: Optional[str] = None) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for net, label in NETWORK_LABELS.items():
        rs = sorted((r for r in result["results"] if r["network"] == net), key=lambda r: r["n_train"])
        if not rs:
            continue
        e = [100 * r.get("accuracy_std", 0.0) for r in rs]
        ax.errorbar([r["n_train"] for r in rs], [100 * r["accuracy"] for r in rs], yerr=e if any(e) else None,
                    marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training images N")
    ax.set_ylabel("test accuracy [%]")
    cfg = result.get("config", {})
    ax.set_title(title or f"8x8 digits, test rotated ({cfg.get('rotation')}), NTK regression")
    return save_figure(fig, ax, path)


def save(result: dict, out_dir: str, stem: str = "digits") -> tuple[str, Optional[str]]:
    """Write ``<stem>.json`` and ``<stem>_accuracy.png`` into ``out_dir``.

    The PNG path is ``None`` (nothing drawn) when matplotlib is not installed.
    """
    j = write_json(os.path.join(out_dir, f"{stem}.json"), result)
    p = plot_if_available(plot_accuracy, result, os.path.join(out_dir, f"{stem}_accuracy.png"))
    return j, p
