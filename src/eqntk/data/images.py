"""Images: npz and image-folder loaders, resizing, rotations, crops.

Arrays are channel-last, ``(N, H, W, C)`` (grayscale gets ``C = 1``), labels
``(N,)`` int64. Image folders follow the NCT-CRC-HE-100K layout: one
subfolder per class, the class names sorted alphabetically give the labels.

Reading image files and resizing need Pillow (``pip install 'eqntk[images]'``).
Rotations use NumPy (multiples of 90°, exact) and ``scipy.ndimage.rotate``
(arbitrary angles, interpolated); both rotate counter-clockwise as displayed
(row 0 at the top), so ``rotate_images(x, 90) == rot90_images(x, 1)`` up to the
interpolation's edge effects.

The 1,797 8×8 digits that scikit-learn bundles are shipped with eqntk
(``sklearn_digits.npz`` next to this module, 45 KB; provenance and licences in
``README_digits.md``): :func:`load_digits` reads them by default, scikit-learn
is not needed. Larger real sets are not shipped; their loaders take the file
path (e.g. ``nct_crc_he_9tiles.npz``: nine 224×224 tiles of NCT-CRC-HE-100K,
Kather et al. 2018, CC-BY 4.0).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import scipy.ndimage

from .splits import split_indices

__all__ = [
    "ImageSet",
    "load_images_npz",
    "load_image_folder",
    "load_nct_crc_he_tiles",
    "load_digits",
    "default_digits_path",
    "resize_images",
    "rot90_images",
    "rotate_images",
    "random_rotations",
    "extract_crops",
    "crops_per_image",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp")
PathLike = Union[str, os.PathLike]


@dataclasses.dataclass(frozen=True, eq=False)
class ImageSet:
    """Labelled images: ``x`` (N, H, W, C), ``y`` (N,) int64, ``classes`` (names of the labels).

    ``names`` optionally holds one name per image (file names). Index with an
    integer array, a slice or a boolean mask (``subset``), or split with ``split``.
    """

    x: np.ndarray
    y: np.ndarray
    classes: tuple = ()
    names: Optional[tuple] = None

    def __post_init__(self):
        x, y = np.asarray(self.x), np.asarray(self.y)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W, C) or (N, H, W), got {x.shape}")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"labels must have shape (N,) = ({x.shape[0]},) to match the images, got {y.shape}")
        if x.shape[0] == 0:
            raise ValueError("the image set is empty")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {y.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise ValueError("images contain NaN or inf")
        classes = tuple(str(c) for c in self.classes) or tuple(str(c) for c in range(int(y.max()) + 1))
        if y.min() < 0 or y.max() >= len(classes):
            raise ValueError(f"labels must lie in [0, {len(classes)}) (one per class name), got [{y.min()}, {y.max()}]")
        names = None if self.names is None else tuple(str(n) for n in self.names)
        if names is not None and len(names) != x.shape[0]:
            raise ValueError(f"{len(names)} names for {x.shape[0]} images")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y.astype(np.int64))
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        return f"ImageSet({len(self)} images of shape {self.x.shape[1:]} {self.x.dtype}, {len(self.classes)} classes)"

    def subset(self, index) -> "ImageSet":
        """The images selected by a slice, integer array or boolean mask."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return ImageSet(self.x[idx], self.y[idx], self.classes,
                        None if self.names is None else tuple(self.names[i] for i in idx))

    __getitem__ = subset

    def split(self, sizes: Sequence, seed: int = 0) -> tuple["ImageSet", ...]:
        """Seeded disjoint random subsets; see :func:`eqntk.data.split_indices`."""
        return tuple(self.subset(i) for i in split_indices(len(self), sizes, seed))

    def as_float(self, scale: Optional[float] = None, dtype=np.float64) -> np.ndarray:
        """Images as floats divided by ``scale`` (default 255 for uint8, else 1)."""
        s = (255.0 if self.x.dtype == np.uint8 else 1.0) if scale is None else float(scale)
        return self.x.astype(dtype) / s


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("reading image files and resizing need Pillow: pip install 'eqntk[images]' "
                          "(or: pip install Pillow)") from None
    return Image


def _check_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    return p


def load_images_npz(path: PathLike, x_key: str = "x", y_key: str = "y", classes_key: Optional[str] = None,
                    names_key: Optional[str] = None) -> ImageSet:
    """Images ``(N, H, W[, C])`` and labels ``(N,)`` from an ``.npz`` file (keys configurable)."""
    p = _check_file(path)
    with np.load(p, allow_pickle=False) as f:
        for k in (x_key, y_key, classes_key, names_key):
            if k is not None and k not in f.files:
                raise ValueError(f"{p}: no array {k!r}; keys: {sorted(f.files)}")
        x, y = f[x_key], f[y_key]
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{p}: {x.shape[0]} images ({x_key!r}) but {y.shape[0]} labels ({y_key!r})")
        classes = tuple(f[classes_key].tolist()) if classes_key else ()
        names = tuple(f[names_key].tolist()) if names_key else None
    return ImageSet(x, y, classes, names)


def load_nct_crc_he_tiles(path: PathLike, size: int = 224) -> ImageSet:
    """The nine NCT-CRC-HE-100K tiles of the shared data (``nct_crc_he_9tiles.npz``), one per class.

    Args:
        path: the ``.npz`` file (keys ``x224``, ``x32``, ``y``, ``names``, ``classes``).
        size: 224 (original), 32 (the stored bilinear thumbnails) or any other size
            (bilinear resize of the 224×224 tiles, which reproduces the stored 32×32 exactly).
    """
    if size == 32:
        return load_images_npz(path, "x32", "y", "classes", "names")
    s = load_images_npz(path, "x224", "y", "classes", "names")
    return s if size == 224 else ImageSet(resize_images(s.x, size), s.y, s.classes, s.names)


def default_digits_path() -> Path:
    """Path of the digits shipped with eqntk (``sklearn_digits.npz``; see ``README_digits.md`` next to it)."""
    return Path(__file__).with_name(_DIGITS_FILE)


_DIGITS_FILE = "sklearn_digits.npz"


def load_digits(path: Optional[PathLike] = None) -> ImageSet:
    """The 1,797 handwritten 8×8 digits scikit-learn bundles, ``x`` (1797, 8, 8, 1) uint8 in 0..16, ``y`` 0..9.

    Args:
        path: an ``.npz`` with keys ``X`` (N, 8, 8) and ``y`` (N,); ``None`` reads the copy
            shipped with eqntk (:func:`default_digits_path`; the same arrays as
            ``sklearn.datasets.load_digits()``, which is not needed).
    """
    s = load_images_npz(default_digits_path() if path is None else path, "X", "y")
    return ImageSet(s.x, s.y, tuple(str(i) for i in range(10)))


def load_image_folder(root: PathLike, size: Union[int, tuple, None] = None, mode: str = "RGB",
                      extensions: Sequence[str] = IMAGE_EXTENSIONS, classes: Optional[Sequence[str]] = None
                      ) -> ImageSet:
    """Read a folder with one subfolder of images per class (the NCT-CRC-HE-100K layout).

    Args:
        root: the folder; its subfolders are the classes (sorted by name → labels 0, 1, …).
        size: resize every image to ``size × size`` (or ``(height, width)``) with bilinear
            interpolation; ``None`` keeps the files' size (they must then all agree).
        mode: Pillow mode the images are converted to (``'RGB'``, ``'L'`` for grayscale).
        extensions: file extensions that count as images (case-insensitive); other files are ignored.
        classes: the class subfolders to read, in label order (default: all, sorted).

    Returns:
        an :class:`ImageSet` with uint8 images ``(N, H, W, C)`` and the file paths
        (relative to ``root``) as names, in class order then file-name order.

    Raises:
        ValueError: no class subfolders, an empty class folder, or images of different sizes
            without ``size``.
    """
    Image = _pil()
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such folder: {root}")
    exts = tuple(e.lower() for e in extensions)
    if classes is None:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise ValueError(f"{root} has no class subfolders (expected one subfolder of images per class)")
    xs, ys, names = [], [], []
    target = None if size is None else ((size, size) if np.isscalar(size) else tuple(size))
    for label, c in enumerate(classes):
        d = root / c
        if not d.is_dir():
            raise ValueError(f"class folder {d} does not exist")
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in exts)
        if not files:
            raise ValueError(f"class folder {d} holds no images (extensions {', '.join(exts)})")
        for f in files:
            with Image.open(f) as im:
                im = im.convert(mode)
                if target is not None and im.size != (target[1], target[0]):
                    im = im.resize((target[1], target[0]), Image.BILINEAR)
                a = np.asarray(im)
            xs.append(a if a.ndim == 3 else a[..., None])
            ys.append(label)
            names.append(str(f.relative_to(root)))
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise ValueError(f"images in {root} have different sizes {sorted(shapes)[:4]}…; pass size= to resize them")
    return ImageSet(np.stack(xs), np.array(ys), tuple(classes), tuple(names))


def resize_images(x, size: Union[int, tuple]) -> np.ndarray:
    """Bilinear resize (Pillow's, antialiased when shrinking) of ``(N, H, W, C)`` images.

    uint8 images stay uint8 (RGB / grayscale rounding as Pillow does); other dtypes are
    resized channel by channel in float32 and returned as float64.
    """
    Image = _pil()
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {x.shape}")
    h, w = (size, size) if np.isscalar(size) else tuple(size)
    if int(h) != h or int(w) != w or h < 1 or w < 1:
        raise ValueError(f"size must be positive integers, got {size!r}")
    h, w = int(h), int(w)
    if x.dtype == np.uint8 and x.shape[-1] in (1, 3):
        out = np.stack([np.asarray(Image.fromarray(a if a.shape[-1] == 3 else a[..., 0]).resize((w, h), Image.BILINEAR))
                        for a in x])
        return out if out.ndim == 4 else out[..., None]
    out = np.empty(x.shape[:1] + (h, w) + x.shape[-1:])
    for n in range(x.shape[0]):
        for c in range(x.shape[-1]):
            im = Image.fromarray(np.ascontiguousarray(x[n, :, :, c], dtype=np.float32), mode="F")
            out[n, :, :, c] = np.asarray(im.resize((w, h), Image.BILINEAR))
    return out


def rot90_images(x, k) -> np.ndarray:
    """Rotate ``(N, H, W, C)`` images by ``k`` quarter turns (counter-clockwise), exactly.

    ``k``: an integer for all images or an array ``(N,)`` of integers (one per image).
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"images must have shape (N, H, W[, C]), got {x.shape}")
    k = np.asarray(k)
    if k.ndim == 0:
        return np.rot90(x, int(k), axes=(1, 2)).copy()
    if k.shape != (x.shape[0],):
        raise ValueError(f"k must be an integer or have shape ({x.shape[0]},), got {k.shape}")
    if x.shape[1] != x.shape[2]:
        raise ValueError("per-image quarter turns need square images")
    return np.stack([np.rot90(a, int(kk)) for a, kk in zip(x, k)])


def rotate_images(x, angle, order: int = 1, mode: str = "constant", cval: float = 0.0) -> np.ndarray:
    """Rotate ``(N, H, W, C)`` images by ``angle`` degrees (counter-clockwise) about their centre.

    Uses ``scipy.ndimage.rotate`` (spline interpolation of ``order``, output of the
    same size, outside filled with ``cval``). ``angle``: a number or an array ``(N,)``.
    Returns float64 images.
    """
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"images must have shape (N, H, W[, C]), got {x.shape}")
    a = np.asarray(angle, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("angles must be finite")
    xf = x.astype(np.float64)
    if a.ndim == 0:
        return scipy.ndimage.rotate(xf, float(a), axes=(2, 1), reshape=False, order=order, mode=mode, cval=cval)
    if a.shape != (x.shape[0],):
        raise ValueError(f"angle must be a number or have shape ({x.shape[0]},), got {a.shape}")
    return np.stack([scipy.ndimage.rotate(img, float(t), axes=(1, 0), reshape=False, order=order, mode=mode,
                                          cval=cval) for img, t in zip(xf, a)])


def random_rotations(x, seed: int = 0, kind: str = "rot90", order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rotate each image by a random angle (the rotated-digits benchmark).

    Args:
        x: images ``(N, H, W, C)``.
        seed: seed of ``numpy.random.default_rng``.
        kind: ``'rot90'`` — uniform over {0°, 90°, 180°, 270°}, exact;
            ``'continuous'`` — uniform in [0°, 360°), interpolated (``rotate_images``).
        order: interpolation order for ``'continuous'``.

    Returns:
        ``(rotated images, angles in degrees (N,))``.
    """
    x = np.asarray(x)
    rng = np.random.default_rng(seed)
    if kind == "rot90":
        k = rng.integers(0, 4, size=x.shape[0])
        return rot90_images(x, k), 90.0 * k
    if kind == "continuous":
        angles = rng.uniform(0.0, 360.0, size=x.shape[0])
        return rotate_images(x, angles, order=order), angles
    raise ValueError(f"kind must be 'rot90' or 'continuous', got {kind!r}")


def crops_per_image(height: int, width: int, size: int, stride: Optional[int] = None) -> int:
    """Number of ``size × size`` crops at ``stride`` (default ``size``) in an image."""
    stride = size if stride is None else stride
    if size > min(height, width):
        return 0
    return ((height - size) // stride + 1) * ((width - size) // stride + 1)


def extract_crops(x, size: int, stride: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """All ``size × size`` crops on a regular grid of step ``stride`` (default ``size``: non-overlapping).

    E.g. the nine 224×224 NCT-CRC tiles with ``size=32`` give 9 · 7 · 7 = 441 crops.

    Returns:
        ``(crops (N·n_crops, size, size, C), source (N·n_crops,))`` where ``source`` is the
        index of the image each crop comes from (labels: ``y[source]``); crops are in
        image order, then row-major over the grid.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C), got {x.shape}")
    stride = size if stride is None else stride
    if int(size) != size or size < 1 or int(stride) != stride or stride < 1:
        raise ValueError(f"size and stride must be positive integers, got {size!r}, {stride!r}")
    H, W = x.shape[1:3]
    if size > min(H, W):
        raise ValueError(f"crop size {size} exceeds the image size {H}×{W}")
    rows = np.arange(0, H - size + 1, stride)
    cols = np.arange(0, W - size + 1, stride)
    win = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))  # (N, H', W', C, s, s)
    win = win[:, rows][:, :, cols]  # (N, nr, nc, C, s, s)
    crops = np.moveaxis(win, 3, -1).reshape(-1, size, size, x.shape[-1])
    source = np.repeat(np.arange(x.shape[0]), rows.size * cols.size)
    return np.ascontiguousarray(crops), source
