"""Markdown tables for docs/dynamics.md from the JSON results (no computation).

    python benchmarks/dynamics_tables.py
"""

import json
import os

R = os.path.join(os.path.dirname(__file__), "results")


def convergence():
    r = json.load(open(os.path.join(R, "kernel_convergence.json")))
    print(f"`{r['command']}` ({r['seconds']:.0f} s)\n")
    for g in ("p4", "so3"):
        print(f"**{g}**: {r[g]['network']}; {r[g]['inputs']}\n")
        print("| width | NNGP rel. err | NTK rel. err |\n|---|---|---|")
        for row in r[g]["rows"]:
            print(f"| {row['width']} | {row['nngp_rel_err']:.3f} ± {row['nngp_rel_err_sem']:.3f} "
                  f"| {row['ntk_rel_err']:.3f} ± {row['ntk_rel_err_sem']:.3f} |")
        f, f16 = r[g]["fits"], r[g].get("fits_width_ge_16", {})
        print(f"\nslopes (all widths): NNGP {f['nngp_rel_err']['slope']:.2f}, NTK {f['ntk_rel_err']['slope']:.2f}; "
              + (f"widths ≥ 16: NNGP {f16['nngp_rel_err']['slope']:.2f}, NTK {f16['ntk_rel_err']['slope']:.2f}"
                 if f16 else "") + "\n")


def digits():
    path = os.path.join(R, "digits_dynamics.json")
    if not os.path.exists(path):
        return
    r = json.load(open(path))
    print(f"`{r['command']}` ({r['seconds']:.0f} s)\n")
    print(f"η = {r['learning_rate']:.4g} (η λ_max/n = {r['eta_times_lambda_max_over_n']:.2f}), steps {r['steps']}, "
          f"augmentation identity on these data: max rel. diff {r['augmentation_identity_max_rel_diff']:.1e}\n")
    print("| width | GCNN vs aug. CNN | GCNN vs NTK | aug. CNN vs NTK | GCNN vs flow | aug. CNN vs flow "
          "| MC noise GCNN | MC noise CNN | noise of the GCNN−CNN gap | final acc. GCNN / CNN |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    for row in r["rows"]:
        m = row["mean_over_times"]
        print(f"| {row['width']} | {m['gcnn_vs_cnn_aug']:.3f} | {m['gcnn_vs_ntk']:.3f} | {m['cnn_aug_vs_ntk']:.3f} "
              f"| {m['gcnn_vs_flow']:.3f} | {m['cnn_aug_vs_flow']:.3f} | {m['noise_gcnn']:.3f} | {m['noise_cnn_aug']:.3f} "
              f"| {(m['noise_gcnn'] ** 2 + m['noise_cnn_aug'] ** 2) ** 0.5:.3f} "
              f"| {row['gcnn']['acc'][-1]:.3f} / {row['cnn_aug']['acc'][-1]:.3f} |")
    print(f"\nslopes of the mean gap vs width (log-log): " + ", ".join(
        f"{k} {v:.2f}" for k, v in r["slopes_of_mean_gap_vs_width"].items()))
    print(f"\nNTK (discrete GD) test accuracy along the steps: {[round(a, 3) for a in r['ntk_discrete_test_accuracy']]}; "
          f"continuous flow vs discrete GD: {[round(a, 3) for a in r['flow_vs_discrete_rel']]}\n")


if __name__ == "__main__":
    convergence()
    digits()
