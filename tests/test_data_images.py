"""Image loaders (npz, folders of PNGs), resizing, rotations, crops."""

import os
from pathlib import Path

import numpy as np
import pytest

import eqntk.data as D

Image = pytest.importorskip("PIL.Image")


def shared_file(name):
    """A file of the developers' data folder, named by the environment variable EQNTK_SHARED_DATA
    (developer-only checks, marked slow; nothing of the fast suite needs it)."""
    root = os.environ.get("EQNTK_SHARED_DATA")
    if not root:
        pytest.skip("set EQNTK_SHARED_DATA to the developers' data folder to run this check")
    p = Path(root) / name
    if not p.exists():
        pytest.skip(f"{name} not in EQNTK_SHARED_DATA={root}")
    return p


def write_nct_like(path, n=3, seed=0):
    """An .npz in the layout of nct_crc_he_9tiles.npz (random 224×224 RGB tiles, Pillow 32×32 thumbnails)."""
    rng = np.random.default_rng(seed)
    x224 = rng.integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)
    classes = np.array(["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"][:n])
    np.savez(path, x224=x224, x32=D.resize_images(x224, 32), y=np.arange(n),
             names=np.array([f"t{i}.tif" for i in range(n)]), classes=classes)
    return x224


def write_folder(root, classes=("b_tum", "a_adi", "c_str"), per_class=(3, 2, 4), size=(6, 5), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    truth = {}
    for c, n in zip(classes, per_class):
        (root / c).mkdir(parents=True)
        for k in range(n):
            shape = (size[0], size[1], 3) if mode == "RGB" else size
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(a).save(root / c / f"img{k:02d}.png")
            truth[f"{c}/img{k:02d}.png"] = a
    (root / "a_adi" / "notes.txt").write_text("not an image")
    return truth


def test_folder_roundtrip(tmp_path):
    truth = write_folder(tmp_path)
    s = D.load_image_folder(tmp_path)
    assert s.classes == ("a_adi", "b_tum", "c_str")
    assert len(s) == 9 and s.x.shape == (9, 6, 5, 3) and s.x.dtype == np.uint8
    assert s.y.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    for img, name, label in zip(s.x, s.names, s.y):
        assert np.array_equal(img, truth[name.replace(os.sep, "/")])
        assert name.startswith(s.classes[label])
    r = D.load_image_folder(tmp_path, size=(4, 3))
    assert r.x.shape == (9, 4, 3, 3)
    assert np.array_equal(r.x, D.resize_images(s.x, (4, 3)))
    sub = D.load_image_folder(tmp_path, classes=["c_str", "a_adi"])
    assert sub.classes == ("c_str", "a_adi") and sub.y.tolist() == [0] * 4 + [1] * 2
    tr, te = s.split([6, None], seed=1)
    assert len(tr) == 6 and len(te) == 3 and not set(tr.names) & set(te.names)
    assert np.allclose(s.as_float().max(), s.x.max() / 255.0)


def test_folder_grayscale(tmp_path):
    truth = write_folder(tmp_path, mode="L", size=(4, 4))
    s = D.load_image_folder(tmp_path, mode="L")
    assert s.x.shape == (9, 4, 4, 1)
    assert all(np.array_equal(img[..., 0], truth[n.replace(os.sep, "/")]) for img, n in zip(s.x, s.names))


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        D.load_image_folder(tmp_path / "empty")
    root = tmp_path / "data"
    write_folder(root)
    (root / "d_empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        D.load_image_folder(root)
    (root / "d_empty" / "big.png").write_bytes(b"")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(root / "d_empty" / "big.png")
    with pytest.raises(ValueError, match="different sizes"):
        D.load_image_folder(root)
    assert D.load_image_folder(root, size=5).x.shape == (10, 5, 5, 3)


def test_npz_loader_and_bad_arrays(tmp_path):
    x = np.random.default_rng(0).random((5, 4, 4))
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(5) % 2)
    s = D.load_images_npz(tmp_path / "a.npz")
    assert s.x.shape == (5, 4, 4, 1) and s.classes == ("0", "1")
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(4))
    with pytest.raises(ValueError, match="5 images .* but 4 labels"):
        D.load_images_npz(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="no array 'images'"):
        D.load_images_npz(tmp_path / "a.npz", x_key="images")
    xn = x.copy()
    xn[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        D.ImageSet(xn, np.zeros(5, int))
    with pytest.raises(ValueError, match="labels must have shape"):
        D.ImageSet(x, np.zeros(4, int))


def test_nct_crc_tiles_resize_and_crops(tmp_path):
    p = tmp_path / "tiles.npz"
    x224 = write_nct_like(p)
    s = D.load_nct_crc_he_tiles(p)
    assert s.x.shape == (3, 224, 224, 3) and s.classes == ("ADI", "BACK", "DEB") and s.y.tolist() == [0, 1, 2]
    assert np.array_equal(s.x, x224) and s.names == ("t0.tif", "t1.tif", "t2.tif")
    # size=32 reads the stored thumbnails, other sizes resize the 224×224 tiles
    assert np.array_equal(D.load_nct_crc_he_tiles(p, size=32).x, D.resize_images(s.x, 32))
    assert np.array_equal(D.load_nct_crc_he_tiles(p, size=16).x, D.resize_images(s.x, 16))
    crops, src = D.extract_crops(s.x, 32)
    assert crops.shape == (147, 32, 32, 3) and D.crops_per_image(224, 224, 32) == 49
    assert np.array_equal(src, np.repeat(np.arange(3), 49))
    # crop 7·2 + 3 of tile 1 is the block at rows 64:96, columns 96:128
    assert np.array_equal(crops[1 * 49 + 2 * 7 + 3], s.x[1, 64:96, 96:128])
    over, _ = D.extract_crops(s.x[:1], 64, stride=32)
    assert over.shape == (36, 64, 64, 3) and np.array_equal(over[7], s.x[0, 32:96, 32:96])
    with pytest.raises(ValueError, match="exceeds"):
        D.extract_crops(s.x, 300)
    # float resize keeps constant images constant
    const = np.full((2, 10, 10, 2), 0.25)
    assert np.allclose(D.resize_images(const, 4), 0.25, atol=1e-7)


@pytest.mark.slow
def test_real_nct_crc_tiles():
    """Developer check of the real file (not shipped: 1 MB): nine tiles, one per class, and its stored
    32×32 thumbnails are Pillow bilinear resizes of the tiles."""
    p = shared_file("nct_crc_he_9tiles.npz")
    s = D.load_nct_crc_he_tiles(p)
    assert s.x.shape == (9, 224, 224, 3) and s.classes[0] == "ADI" and s.y.tolist() == list(range(9))
    assert np.array_equal(D.resize_images(s.x, 32), D.load_nct_crc_he_tiles(p, size=32).x)


def test_shipped_digits():
    d = D.load_digits()
    assert D.default_digits_path().stat().st_size < 100 * 1024
    assert d.x.shape == (1797, 8, 8, 1) and d.x.dtype == np.uint8 and d.x.min() == 0 and d.x.max() == 16
    assert d.y.shape == (1797,) and np.bincount(d.y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # the first image of sklearn.datasets.load_digits() (a zero), row by row
    assert d.y[0] == 0 and d.x[0, :2, :, 0].tolist() == [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0]]


def test_digits_rotations():
    d = D.load_digits()
    assert d.x.shape == (1797, 8, 8, 1) and d.x.max() == 16 and d.classes == tuple("0123456789")
    x = d.x[:50].astype(np.float64)
    r1 = D.rot90_images(x, 1)
    # a quarter turn counter-clockwise: the top row becomes the left column, read bottom-up
    assert np.array_equal(r1[:, ::-1, 0], x[:, 0, :])
    assert np.array_equal(D.rot90_images(x, 4), x)
    assert np.array_equal(D.rot90_images(r1, 3), x)
    # scipy's interpolated rotation agrees with the exact one at 90°, and in direction
    assert np.allclose(D.rotate_images(x, 90.0), r1, atol=1e-10)
    assert np.allclose(D.rotate_images(x, np.full(50, 270.0)), D.rot90_images(x, 3), atol=1e-10)
    xr, ang = D.random_rotations(x, seed=3)
    assert set(np.unique(ang)) <= {0.0, 90.0, 180.0, 270.0}
    assert np.array_equal(xr, D.rot90_images(x, (ang // 90).astype(int)))
    xr2, ang2 = D.random_rotations(x, seed=3)
    assert np.array_equal(xr, xr2) and np.array_equal(ang, ang2)
    xc, angc = D.random_rotations(x, seed=0, kind="continuous")
    assert xc.shape == x.shape and np.all((angc >= 0) & (angc < 360))
    k = 5
    assert np.allclose(xc[k], D.rotate_images(x[k:k + 1], angc[k])[0])
    # a 45° rotation keeps the mass of a centred blob (no pixels lost at the border)
    blob = np.zeros((1, 15, 15, 1))
    blob[0, 6:9, 6:9] = 1.0
    assert D.rotate_images(blob, 45.0, order=1).sum() == pytest.approx(9.0, rel=0.05)
    with pytest.raises(ValueError, match="kind"):
        D.random_rotations(x, kind="flip")
