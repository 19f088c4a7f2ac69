"""Tiled driver: resumable tile stores and sharding over devices."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from eqntk import stax
from eqntk.core import store as store_mod


def _net():
    return stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(1, b_std=0.1))


def _x(n=9, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 9, 2))


def test_interrupted_run_resumes_to_identical_matrix(tmp_path, monkeypatch):
    _, _, kf = _net()
    x = _x()
    ref = kf(x, tile_size=2)
    n_tiles = 5 * 6 // 2  # 5 row tiles, upper triangle incl. diagonal: 15

    saved = []
    real_save = store_mod.TileStore.save

    def failing_save(self, i, j, outputs):
        if len(saved) == 4:
            raise KeyboardInterrupt("injected after 4 tiles")
        real_save(self, i, j, outputs)
        saved.append((i, j))

    monkeypatch.setattr(store_mod.TileStore, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        kf(x, tile_size=2, store=tmp_path / "gram")
    assert store_mod.TileStore(tmp_path / "gram", _manifest(tmp_path / "gram")).completed() == 4

    saved.clear()
    monkeypatch.setattr(store_mod.TileStore, "save", lambda self, i, j, o: (saved.append((i, j)),
                                                                           real_save(self, i, j, o)))
    out = kf(x, tile_size=2, store=tmp_path / "gram")
    assert len(saved) == n_tiles - 4  # nothing recomputed, nothing lost
    np.testing.assert_array_equal(out.nngp, ref.nngp)
    np.testing.assert_array_equal(out.ntk, ref.ntk)
    # a third run computes nothing
    saved.clear()
    again = kf(x, tile_size=2, store=tmp_path / "gram")
    assert saved == []
    np.testing.assert_array_equal(again.ntk, ref.ntk)


def _manifest(path):
    import json

    with open(os.path.join(path, "manifest.json")) as f:
        return json.load(f)


def test_store_refuses_a_different_computation(tmp_path):
    _, _, kf = _net()
    kf(_x(), tile_size=4, store=tmp_path / "s")
    with pytest.raises(ValueError, match="different computation"):
        kf(_x(seed=1), tile_size=4, store=tmp_path / "s")
    _, _, other = stax.serial(stax.S2ConvSO3(1, 3, W_std=2.0), stax.Erf(), stax.SO3Pool(), stax.Dense(1))
    with pytest.raises(ValueError, match="network"):
        other(_x(), tile_size=4, store=tmp_path / "s")


def test_sharded_gram_equals_single_device(tmp_path):
    """Four virtual CPU devices (XLA flag set before JAX starts, hence a subprocess)."""
    script = textwrap.dedent("""
        import os, sys
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
        import jax
        jax.config.update("jax_enable_x64", True)
        import numpy as np
        from eqntk import stax
        assert jax.device_count() == 4, jax.devices()
        _, _, kf = stax.serial(stax.S2ConvSO3(1, 3), stax.Relu(), stax.SO3ConvSO3(1, 2), stax.Erf(),
                               stax.SO3Pool(), stax.Dense(1))
        x = np.random.default_rng(0).normal(size=(11, 9, 2))
        y = np.random.default_rng(1).normal(size=(6, 9, 2))
        for a, b in ((x, None), (x, y)):
            sharded = kf(a, b, tile_size=3)
            single = kf(a, b, tile_size=3, devices=jax.devices()[:1])
            np.testing.assert_array_equal(sharded.nngp, single.nngp)
            np.testing.assert_array_equal(sharded.ntk, single.ntk)
        print("OK")
    """)
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
