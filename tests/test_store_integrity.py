"""Tile stores never hand back another computation's numbers (issue 15).

Oracles: the same kernel computed without a store; the refusal of a store made for a
different network; checksums against flipped and truncated files; two processes sharing one
store against a single-process run.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import jax.numpy as jnp

import eqntk.data as D
from eqntk import stax
from eqntk.core import store as store_mod
from eqntk.core.fingerprint import Unfingerprintable, describe, fingerprint
from eqntk.core.store import StoreWarning, TileStore


def _x(n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 9, 2))


def _net(fn, **kw):
    return stax.serial(stax.S2ConvSO3(1, 3), stax.Elementwise(fn, **kw), stax.SO3Pool(), stax.Dense(1))[2]


# --------------------------------------------------------------------------- identity of a network
def test_two_lambdas_with_one_display_name_do_not_share_tiles(tmp_path):
    x = _x()
    k_sin, k_tanh = _net(lambda z: jnp.sin(z)), _net(lambda z: jnp.tanh(z))
    assert k_sin.name == k_tanh.name  # what the store used to key on
    k_sin(x, tile_size=2, store=tmp_path / "g")
    with pytest.raises(ValueError, match="different computation"):
        k_tanh(x, tile_size=2, store=tmp_path / "g")
    # and in a fresh store the tanh kernel is the tanh kernel
    np.testing.assert_array_equal(k_tanh(x, tile_size=2, store=tmp_path / "h").ntk, k_tanh(x, tile_size=2).ntk)


def _scaled(a):
    return lambda z: jnp.sin(a * z)


def test_closure_constants_globals_and_parameters_are_part_of_the_identity():
    assert fingerprint(_net(_scaled(1.0))) != fingerprint(_net(_scaled(2.0)))
    assert fingerprint(_net(_scaled(1.0))) == fingerprint(_net(_scaled(1.0)))  # rebuilt: same
    assert fingerprint(_net(jnp.sin)) != fingerprint(_net(jnp.cos))
    base = stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(1))[2]
    for other in (stax.serial(stax.S2ConvSO3(1, 3, W_std=1.5), stax.Erf(), stax.SO3Pool(), stax.Dense(1)),
                  stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(b=0.5), stax.SO3Pool(), stax.Dense(1)),
                  stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(oversampling=4), stax.Dense(1)),
                  stax.serial(stax.S2ConvSO3(1, 3), stax.Relu(), stax.SO3Pool(), stax.Dense(1)),
                  stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(1, b_std=0.0))):
        assert fingerprint(other[2]) != fingerprint(base)
    g = {"jnp": jnp, "A": 1.0}
    f1 = eval("lambda z: jnp.sin(A * z)", g)
    d1 = describe(f1)
    g["A"] = 2.0  # a global the function reads changed
    assert describe(f1) != d1


def test_fingerprint_is_the_same_in_another_process(tmp_path):
    mod = tmp_path / "netdef.py"
    mod.write_text(textwrap.dedent("""
        import jax.numpy as jnp
        from eqntk import stax
        SCALE = 0.7
        def act(z):
            return jnp.tanh(SCALE * z) + {0.5, 1.5}.__len__()
        NET = stax.serial(stax.S2ConvSO3(2, 3), stax.Elementwise(act), stax.SO3ConvSO3(2, 2),
                          stax.Elementwise(lambda z: z * jnp.sin(z)), stax.SO3Pool(), stax.Dense(1))[2]
        print(NET.fingerprint())
    """))
    outs = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed, JAX_PLATFORMS="cpu")
        r = subprocess.run([sys.executable, str(mod)], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1] and len(outs[0]) == 64


class _Opaque:
    def __call__(self, z):
        return jnp.sin(z)


def test_unfingerprintable_function_is_refused_unless_named(tmp_path):
    x = _x()
    k = _net(_Opaque())
    with pytest.raises(Unfingerprintable):
        fingerprint(_Opaque())
    with pytest.raises(ValueError, match="name="):
        k(x, store=tmp_path / "g")
    k(x)  # without a store nothing needs an identity
    named = _net(_Opaque(), name="sin via an object")
    np.testing.assert_array_equal(named(x, store=tmp_path / "n").ntk, _net(jnp.sin)(x).ntk)


def test_molecular_block_store_keys_on_the_network(tmp_path):
    ms = D.load_qm9()[:4]
    x = D.atomic_environments(ms, bandlimit=3)
    kw = dict(get="nngp", same_element=True, block_atoms=8, block_store=str(tmp_path / "b"))
    D.molecular_kernel_fn(_net(lambda z: jnp.sin(z)), x, ms, **kw)
    with pytest.raises(ValueError, match="different computation"):
        D.molecular_kernel_fn(_net(lambda z: jnp.tanh(z)), x, ms, **kw)


# --------------------------------------------------------------------------- checksums
def _kf():
    return stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(1))[2]


def _tile_files(path):
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".npy"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "marker"])
def test_damaged_tile_is_reported_by_name_and_recomputed(tmp_path, damage):
    x, kf, d = _x(), _kf(), str(tmp_path / "g")
    ref = kf(x, tile_size=2)
    kf(x, tile_size=2, store=d)
    victim = _tile_files(d)[3]
    if damage == "flip":
        data = bytearray(open(victim, "rb").read())
        data[-3] ^= 0x40  # one bit of one float: 1e-4-sized, or 1e306, or NaN before
        open(victim, "wb").write(bytes(data))
    elif damage == "truncate":
        os.truncate(victim, os.path.getsize(victim) // 2)
    elif damage == "delete":
        os.remove(victim)
    else:
        victim = victim.rsplit("_", 1)[0] + ".done"
        open(victim, "w").write("{not json")
    with pytest.warns(StoreWarning, match=os.path.basename(victim)):
        out = kf(x, tile_size=2, store=d)
    np.testing.assert_array_equal(out.nngp, ref.nngp)
    np.testing.assert_array_equal(out.ntk, ref.ntk)
    with warnings.catch_warnings():  # repaired: no warning the next time
        warnings.simplefilter("error", StoreWarning)
        np.testing.assert_array_equal(kf(x, tile_size=2, store=d).ntk, ref.ntk)


def test_unreadable_manifest_names_the_file(tmp_path):
    d = tmp_path / "g"
    _kf()(_x(), tile_size=2, store=d)
    (d / "manifest.json").write_text("{")
    with pytest.raises(ValueError, match="manifest.json"):
        _kf()(_x(), tile_size=2, store=d)


# --------------------------------------------------------------------------- several writers
def test_claims_are_exclusive_and_dead_claims_are_taken_over(tmp_path):
    a = TileStore(tmp_path / "s", {"what": 1})
    b = TileStore(tmp_path / "s", {"what": 1})
    assert a.claim(0, 0)
    path = os.path.join(a.path, "tile_0_0.claim")
    info = json.load(open(path))
    info["pid"] = os.getppid()  # a live process other than this one holds it
    json.dump(info, open(path, "w"))
    assert not b.claim(0, 0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    info["pid"] = dead.pid  # its holder has exited: stale
    json.dump(info, open(path, "w"))
    assert b.claim(0, 0)
    info["pid"], info["host"], info["time"] = 1, "another-host", 0.0  # old claim of another host
    json.dump(info, open(path, "w"))
    assert b.claim(0, 0)


def test_unique_temporary_names(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real(src, dst)

    monkeypatch.setattr(store_mod.os, "replace", spy)
    s = TileStore(tmp_path / "s", {"what": 1})
    s.save(0, 0, [np.ones(2), None])
    s.save(0, 0, [np.ones(2), None])
    assert len(set(seen)) == len(seen)  # no two writes share a temporary file name
    assert all(str(os.getpid()) in n for n in seen)


def test_a_tile_finished_between_look_and_claim_is_not_computed_again(tmp_path, monkeypatch):
    """The race behind a tile computed twice: this process finds tile (0, 1) unfinished, then
    another process finishes it and drops its claim, then this process claims it. The tile must
    come from the store, not be computed again."""
    from eqntk.core.driver import run_shared

    s = TileStore(tmp_path / "s", {"what": 1})
    theirs = [np.full(2, 7.0)]
    real_claim = TileStore.claim

    def claim(self, i, j):
        if (i, j) == (0, 1) and not self.is_done(0, 1):
            other = TileStore(self.path, {"what": 1})  # the other process, start to finish
            assert real_claim(other, 0, 1)
            other.save(0, 1, theirs)
            other.release(0, 1)
        return real_claim(self, i, j)

    monkeypatch.setattr(TileStore, "claim", claim)
    computed, placed = [], {}

    def compute(batch):
        computed.extend(batch)
        return [[np.full(2, float(i + j))] for i, j in batch]

    run_shared([(0, 0), (0, 1), (1, 1)], s, 1, compute, lambda i, j, o: placed.__setitem__((i, j), o[0]))
    assert computed == [(0, 0), (1, 1)]
    np.testing.assert_array_equal(placed[(0, 1)], theirs[0])
    assert not os.path.exists(os.path.join(s.path, "tile_0_1.claim"))  # our claim dropped again


def test_a_marked_but_unreadable_tile_is_recomputed_once(tmp_path):
    from eqntk.core.driver import run_shared

    s = TileStore(tmp_path / "s", {"what": 1})
    s.save(0, 0, [np.ones(2)])
    with open(os.path.join(s.path, "tile_0_0_0.npy"), "ab") as f:
        f.write(b"x")  # fails its checksum
    computed = []

    def compute(batch):
        computed.extend(batch)
        return [[np.full(2, 3.0)] for _ in batch]

    with pytest.warns(StoreWarning, match="checksum") as record:
        run_shared([(0, 0)], s, 1, compute, lambda i, j, o: None)
    assert computed == [(0, 0)] and len(record) == 1
    np.testing.assert_array_equal(s.load(0, 0, 1)[0], np.full(2, 3.0))


_WORKER = textwrap.dedent("""
    import sys, json
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from eqntk import stax
    from eqntk.core import store as store_mod
    computed = []
    real = store_mod.TileStore.save
    def save(self, i, j, outs):
        computed.append([i, j])
        real(self, i, j, outs)
    store_mod.TileStore.save = save
    x = np.random.default_rng(0).normal(size=(24, 9, 2))
    kf = stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(1))[2]
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # start together
    k = kf(x, tile_size=2, store=sys.argv[1])
    np.save(sys.argv[2], np.asarray(k.ntk))
    print(json.dumps(computed))
""")


def test_two_processes_share_one_store(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "g"), str(tmp_path / f"k{p}.npy")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env) for p in range(2)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    computed = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    n_tiles = 12 * 13 // 2
    everything = sorted(map(tuple, computed[0] + computed[1]))
    assert sorted(set(everything)) == sorted((i, j) for i in range(0, 24, 2) for j in range(i, 24, 2))
    assert len(everything) == n_tiles  # each tile computed once, by one of them
    ref = _kf()(np.random.default_rng(0).normal(size=(24, 9, 2)), tile_size=2).ntk
    for p in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"k{p}.npy"), ref)


_DIST_WORKER = textwrap.dedent("""
    import json
    import sys
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    pid, port, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import numpy as np
    import eqntk.data as D
    from eqntk import stax
    from eqntk.core import store as store_mod
    computed = []
    real = store_mod.TileStore.save
    def save(self, i, j, outs):
        computed.append([os.path.basename(self.path), i, j])
        real(self, i, j, outs)
    import os
    store_mod.TileStore.save = save
    x = np.random.default_rng(0).normal(size=(12, 9, 2))
    kf = stax.serial(stax.S2ConvSO3(1, 3), stax.Erf(), stax.SO3Pool(), stax.Dense(1))[2]
    assert jax.process_count() == 2
    first = kf(x, tile_size=1, store=store)  # 78 tiles: enough for both processes to take some
    again = kf(x, tile_size=1, store=store)  # resumes: every tile from the store
    ms = D.MoleculeSet.from_counts(np.array([3, 2, 4, 3]), np.array([1, 6, 1, 8, 1, 6, 6, 1, 1, 1, 8, 6]),
                                   np.random.default_rng(1).normal(size=(12, 3)))
    mol = D.molecular_kernel_fn(kf, x, ms, get="ntk", same_element=True, block_atoms=2, tile_size=1,
                                block_store=store + "_mol")
    np.save(out, np.stack([np.asarray(first.ntk), np.asarray(again.ntk)]))
    np.save(out + ".mol.npy", mol)
    n_divided = len(computed)
    coll = kf(x, tile_size=3, store=store + "_coll", devices=jax.devices())  # collective: tiles over both processes
    np.save(out + ".coll.npy", np.asarray(coll.ntk))
    print(json.dumps(computed[:n_divided]))
""")


def test_jax_distributed_processes_divide_the_tiles(tmp_path):
    """Two jax.distributed processes on localhost with one store: every tile (and every molecular
    block) computed once, by one of them, and both return the whole matrix, equal to one process's."""
    import socket

    import eqntk.data as D

    with socket.socket() as s:  # a free loopback port for the coordinator
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    script = tmp_path / "dist.py"
    script.write_text(_DIST_WORKER)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, str(script), str(p), port, str(tmp_path / "g"),
                               str(tmp_path / f"k{p}.npy")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for p in range(2)]
    try:
        results = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    x = np.random.default_rng(0).normal(size=(12, 9, 2))
    ref = _kf()(x, tile_size=1).ntk
    ms = D.MoleculeSet.from_counts(np.array([3, 2, 4, 3]), np.array([1, 6, 1, 8, 1, 6, 6, 1, 1, 1, 8, 6]),
                                   np.random.default_rng(1).normal(size=(12, 3)))
    mol_ref = D.molecular_kernel(np.asarray(ref), ms, same_element=True)
    for p in range(2):
        k = np.load(tmp_path / f"k{p}.npy")
        np.testing.assert_array_equal(k[0], ref)
        np.testing.assert_array_equal(k[1], ref)
        np.testing.assert_allclose(np.load(tmp_path / f"k{p}.npy.mol.npy"), mol_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.load(tmp_path / f"k{p}.npy.coll.npy"), _kf()(x, tile_size=3).ntk, rtol=1e-12)
    computed = [json.loads(out.strip().splitlines()[-1]) for out, _ in results]
    everything = sorted(map(tuple, computed[0] + computed[1]))
    assert len(everything) == len(set(everything))  # nothing computed twice
    tiles = [t for t in everything if t[0] == "g"]
    assert sorted(t[1:] for t in tiles) == sorted((i, j) for i in range(12) for j in range(i, 12))
    blocks = [t for t in everything if t[0] != "g"]
    # same-element blocks of 2 atoms: H 6 atoms (3 blocks, 6 pairs), C 4 (2, 3), O 2 (1, 1)
    assert len(blocks) == 6 + 3 + 1
    # (which process computed how many tiles depends on timing; that each computed only its claims is the point)
    assert TileStore(tmp_path / "g", json.load(open(tmp_path / "g" / "manifest.json"))).completed() == 12 * 13 // 2


def test_augmented_kernel_resumes_from_a_store(tmp_path):
    from eqntk.augment import augment

    x = _x(4)
    k_aug = augment(_kf(), "so3", oversampling=2)
    ref = k_aug(x, tile_size=2)
    first = k_aug(x, store=tmp_path / "a", tile_size=2)
    again = k_aug(x, store=tmp_path / "a", tile_size=2)
    np.testing.assert_array_equal(first.ntk, ref.ntk)
    np.testing.assert_array_equal(again.ntk, ref.ntk)
