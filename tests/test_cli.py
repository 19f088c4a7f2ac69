"""Smoke tests of the ``eqntk`` command (tiny settings, in subprocesses: the CLI configures JAX)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest


def eqntk(*args, timeout=300):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "eqntk.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_qm9_tiny_run_writes_finite_results(tmp_path):
    out = tmp_path / "qm9"
    r = eqntk("qm9", "--n-train", "12", "24", "--n-val", "8", "--n-test", "8", "--bandlimit", "2",
              "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "qm9.json").read_text())
    assert (out / "qm9_learning_curve.png").stat().st_size > 1000
    kernels = {row["kernel"] for row in res["results"]}
    assert kernels == {"element_baseline", "so3_ntk", "so3_nngp", "mlp_ntk", "mlp_nngp"}
    assert {row["n_train"] for row in res["results"]} == {12, 24}
    for row in res["results"]:
        assert math.isfinite(row["mae_meV"]) and row["mae_meV"] > 0
        assert row["rmse_meV"] >= row["mae_meV"] - 1e-9
    assert len(res["split"]["test_ids"]) == 8 and len(res["split"]["pool_ids"]) == 32
    assert not set(res["split"]["test_ids"]) & set(res["split"]["pool_ids"])
    # the printed table names the kernels
    assert "SO(3) GCNN NTK" in r.stdout and "MLP-on-signals NTK" in r.stdout


def test_qm9_landmarks_run(tmp_path):
    out = tmp_path / "qm9"
    r = eqntk("qm9", "--n-train", "12", "24", "--n-val", "8", "--n-test", "8", "--bandlimit", "2", "--kernel", "mlp",
              "--landmarks", "60", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "qm9.json").read_text())
    assert res["config"]["landmarks"] == 60
    rows = [row for row in res["results"] if row["kernel"] != "element_baseline"]
    assert {row["kernel"] for row in rows} == {"mlp_ntk", "mlp_nngp"}
    for row in rows:
        assert row["landmarks"] == 60 and 1 <= row["rank"] <= 60 and math.isfinite(row["mae_meV"])
    r = eqntk("qm9", "--n-train", "3", "--n-val", "2", "--n-test", "2", "--landmarks", "5000", "--kernel", "mlp",
              "--out", str(tmp_path / "big"), timeout=120)
    assert r.returncode == 2 and "exceeds the" in r.stderr


def test_qm9_rtol_chooses_and_records_the_oversampling(tmp_path):
    out = tmp_path / "qm9"
    r = eqntk("qm9", "--n-train", "8", "--n-val", "4", "--n-test", "4", "--bandlimit", "2", "--kernel", "so3",
              "--rtol", "1e-3", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "qm9.json").read_text())
    acc = res["accuracy"]
    assert acc["rtol"] == 1e-3 and acc["estimate"] <= 1e-3
    assert res["config"]["oversampling"] == acc["oversampling"]
    assert "estimated relative error" in r.stdout


def test_digits_tiny_run(tmp_path):
    # no --data: the digits shipped with eqntk (package data), no scikit-learn
    out = tmp_path / "digits"
    r = eqntk("digits", "--n-train", "10", "20", "--n-val", "10", "--n-test", "20", "--network", "cnn", "p4",
              "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "digits.json").read_text())
    assert (out / "digits_accuracy.png").is_file()
    assert {(row["network"], row["n_train"]) for row in res["results"]} == {
        ("cnn", 10), ("cnn", 20), ("p4", 10), ("p4", 20)}
    for row in res["results"]:
        assert 0.0 <= row["accuracy"] <= 1.0


def test_without_matplotlib_the_png_is_skipped_with_a_note(tmp_path):
    # matplotlib is the optional ``plot`` extra: None in sys.modules makes ``import matplotlib`` fail
    out = tmp_path / "digits"
    code = ("import sys; sys.modules['matplotlib'] = None; from eqntk.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", code, "digits", "--n-train", "10", "--n-val", "10", "--n-test", "10",
                        "--network", "cnn", "--out", str(out), "--no-progress"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "digits.json").is_file() and not (out / "digits_accuracy.png").exists()
    assert "PNG skipped (pip install 'eqntk[plot]')" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["qm9", "--n-train", "0"], "--n-train must be a positive integer"),
    (["qm9", "--n-train", "ten"], "--n-train must be a positive integer"),
    (["qm9", "--kernel", "rbf"], "invalid choice: 'rbf'"),
    (["qm9", "--ridge", "-1"], "--ridge must be a finite number >= 0"),
    (["qm9", "--landmarks", "0"], "--landmarks must be a positive integer"),
    (["qm9", "--rtol", "-1"], "--rtol must be"),
    (["digits", "--network", "resnet"], "invalid choice: 'resnet'"),
])
def test_bad_arguments_exit_nonzero_with_message(args, message):
    r = eqntk(*args, timeout=60)
    assert r.returncode != 0
    assert message in r.stderr


def test_qm9_too_small_training_set_is_refused():
    r = eqntk("qm9", "--n-train", "1", "--n-test", "5", "--n-val", "5", timeout=120)
    assert r.returncode == 2
    assert "n_train must be one or more integers >= 2" in r.stderr


def test_qm9_more_molecules_than_available_is_refused(tmp_path):
    r = eqntk("qm9", "--n-train", "4000", "--n-val", "1000", "--n-test", "1000", "--out", str(tmp_path), timeout=120)
    assert r.returncode == 2
    assert "fewer than the" in r.stderr


def test_digits_missing_file_is_a_clear_error(tmp_path):
    r = eqntk("digits", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path), timeout=120)
    assert r.returncode == 2
    assert "no digits file" in r.stderr


def test_help_explains_the_commands():
    r = eqntk("qm9", "--help", timeout=60)
    assert r.returncode == 0
    assert "atomization" in r.stdout and "--n-train" in r.stdout and "embedded" in r.stdout
    r = eqntk("digits", "--help", timeout=60)
    assert r.returncode == 0 and "p4m" in r.stdout
