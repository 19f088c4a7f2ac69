"""Print the Markdown tables of docs/experiments.md from the result JSONs in benchmarks/results/.

    python benchmarks/experiments_tables.py
"""

from __future__ import annotations

import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
LABELS = {"fchl19": "FCHL19 (qmllib)", "element_baseline": "per-element linear baseline", "so3_ntk": "SO(3) GCNN NTK",
          "so3_nngp": "SO(3) GCNN NNGP", "mlp_ntk": "MLP-on-signals NTK", "mlp_nngp": "MLP-on-signals NNGP"}
NETS = {"cnn": "CNN NTK", "p4": "p4 GCNN NTK", "p4m": "p4m GCNN NTK"}


def _load(name):
    p = os.path.join(RESULTS, name)
    return json.load(open(p)) if os.path.isfile(p) else None


def _md(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def qm9_select(d):
    rows = [[LABELS[r["kernel"]], ",".join(f"{p:g}" for p in r.get("powers", [1, 2, 3])), r["bandlimit"], r["w_std"], r["oversampling"] or "–", f"{r['ridge_rel']:g}",
             f"{r['val_mae_meV']:.0f}", f"{r['min_eig_rel']:.1e}", f"{r['kernel_seconds']:.0f}"]
            for r in d["results"]]
    return _md(["kernel", "powers", "L", "W_std", "SO3Pool oversampling", "ridge (rel.)", "val. MAE [meV]",
                "min/max eigenvalue", "kernel time [s]"], rows)


def qm9_select_rbf(d):
    rows = []
    for run in d["runs"]:
        for r in run["results"]:
            rows.append([LABELS[r["kernel"]], r["config"], f"{r['val_mae_meV']:.1f} ± {r['val_mae_se_meV']:.1f}",
                         ", ".join(f"{v:g}" for v in sorted({s['ridge_rel'] for s in r["splits"]})),
                         f"{r['kernel_seconds']:.0f}"])
    return _md(["kernel", "configuration", "val. MAE [meV] (± s.e., 6 splits)", "ridges chosen", "kernel time [s]"],
               rows)


def qm9_curve(d):
    ns = sorted({r["n_train"] for r in d["results"]})
    rows = []
    for k, label in LABELS.items():
        rs = {r["n_train"]: r for r in d["results"] if r["kernel"] == k}
        if rs:
            rows.append([label] + [f"{rs[n]['mae_meV']:.0f} ± {rs[n]['mae_std_meV']:.0f}" for n in ns])
    return _md(["test MAE [meV] (mean ± std over splits)"] + [f"N = {n}" for n in ns], rows)


def images(d, key="rotation"):
    ns = sorted({r["n_train"] for r in d["results"]})
    rows = []
    for rot in sorted({r[key] for r in d["results"]}):
        for net, label in NETS.items():
            rs = {r["n_train"]: r for r in d["results"] if r["network"] == net and r[key] == rot}
            if rs:
                rows.append([f"{label}, test {rot}".replace("test test", "test")] +
                            [f"{100 * rs[n]['accuracy']:.1f} ± {100 * rs[n]['accuracy_std']:.1f}" for n in ns])
    return _md(["test accuracy [%] (± binomial s.e.)"] + [f"N = {n}" for n in ns], rows)


def main():
    for name, fn in [("qm9_select.json", qm9_select), ("qm9_select_clean.json", qm9_select),
                     ("qm9_select_powers.json", qm9_select), ("qm9_curve.json", qm9_curve),
                     ("qm9_curve_large.json", qm9_curve), ("qm9_curve_osf3.json", qm9_curve),
                     ("qm9_curve_5000.json", qm9_curve), ("qm9_select_rbf.json", qm9_select_rbf),
                     ("qm9_fchl19.json", qm9_curve), ("digits_curve.json", images),
                     ("digits_curve_1000.json", images), ("histology_demo.json", images)]:
        d = _load(name)
        print(f"### {name}\n")
        print(fn(d) if d else "(missing)")
        if d and "kernel_seconds" in d and isinstance(d["kernel_seconds"], dict):
            print("\nkernel seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in d["kernel_seconds"].items()))
        if d and isinstance(d.get("seconds"), dict):
            print("\nseconds: " + ", ".join(f"{k} {v:.0f}" for k, v in d["seconds"].items()))
        print()


if __name__ == "__main__":
    sys.exit(main())
