"""Image folders ("my own cats and dogs"): one sub-folder per class, decoded with PIL, resized to one size.

Two layouts are read (the second is the one `tfds.ImageFolder` reads, so both tools see the same data):

    ROOT/<class>/<image>            split "train" (and "validation" when validation_fraction > 0)
    ROOT/<split>/<class>/<image>    splits named by the folders (e.g. "train", "test")

Class names are the sorted names of the class folders (the union over all split folders), and label k is the
k-th name. Files whose names do not end in an image suffix (`IMAGE_SUFFIXES`) and hidden files are ignored.
Every folder is read or named: in the split layout a folder beside the split folders raises ValueError naming
it, and folders nested inside class folders (not read) are named in a warning.

Images are decoded at their real bit depth (see `to_8bit`): 16-bit images are scaled to 8 bits, float images in
[0, 1] by 255, and modes whose range is unknown (32-bit integers, floats outside [0, 1]) are refused with an
error naming the file and the mode.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from cnnjax import shapes
from cnnjax.data.quiet import bar_disabled

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
SPLIT_FOLDERS = ("train", "test", "validation", "val")
_MODES = {"rgb": "RGB", "grayscale": "L"}


def _subdirs(path: str) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _images_in(path: str) -> list[str]:
    return sorted(
        e.name for e in os.scandir(path)
        if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
    )


def folder_layout(root: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """({split: folder}, class_names) of an image folder; ValueError for empty classes or a single class."""
    if not os.path.isdir(root):
        raise ValueError(f"load_image_folder: root {root!r} is not a folder.")
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d in SPLIT_FOLDERS and _subdirs(os.path.join(root, d))]
    splits = {d: os.path.join(root, d) for d in split_dirs} if split_dirs else {"train": root}
    stray = [d for d in subdirs if d not in split_dirs] if split_dirs else []
    if stray:
        raise ValueError(
            f"load_image_folder: {root!r} holds the split folders {split_dirs} and also the folder(s) {stray}, "
            f"which would not be read (a split folder is named one of {SPLIT_FOLDERS} and holds class folders); "
            f"move them into a split folder as classes, or out of the root."
        )
    classes = sorted({c for folder in splits.values() for c in _subdirs(folder)})
    if not classes:
        raise ValueError(
            f"load_image_folder: {root!r} has no class sub-folders; expected ROOT/<class>/<image> or "
            f"ROOT/<split>/<class>/<image>."
        )
    if len(classes) < 2:
        raise ValueError(
            f"load_image_folder: {root!r} has only one class folder {classes}; a classifier needs at least two "
            f"(one sub-folder per class)."
        )
    nested = []
    for folder in splits.values():
        for c in _subdirs(folder):
            if not _images_in(os.path.join(folder, c)):
                raise ValueError(
                    f"load_image_folder: class folder {os.path.join(folder, c)!r} holds no images (files ending "
                    f"in {IMAGE_SUFFIXES}); add images or remove the folder."
                )
            nested += [os.path.join(folder, c, d) for d in _subdirs(os.path.join(folder, c))]
    if nested:
        warnings.warn(
            f"load_image_folder: {len(nested)} folder(s) inside class folders are not read (only the images "
            f"directly in ROOT[/<split>]/<class>/ are), e.g. {nested[:3]}.", stacklevel=3)
    return splits, tuple(classes)


def as_image_size(value, fn: str) -> tuple[int, int] | None:
    """``value`` as ``(height, width)``: None stays None, an int n means ``(n, n)``; ValueError naming ``fn``
    for anything else than one or two ints >= 1."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        ok = len(pair) == 2 and all(not isinstance(s, bool) and int(s) == s and s >= 1 for s in pair)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{fn}: image_size={value!r}; expected (height, width) of ints >= 1, or one int for a "
                         "square.")
    return int(pair[0]), int(pair[1])


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_8bit(image: Image.Image) -> Image.Image:
    """``image`` as an 8-bit PIL image, at its real bit depth and range, or ValueError naming its mode (the
    callers add the file's name).

    Decoded, not clipped (PIL's own ``convert`` clips every value of a 16-bit or float image to 0..255, so 1000
    would read as 255 and a float 0.5 as 0):

    - 8-bit modes ("L", "RGB", "RGBA", "P", "1", ...) are returned as they are;
    - unsigned 16-bit grayscale ("I;16*", and a 16-bit PNG that PIL opens as "I") is scaled by 255/65535 with
      rounding (1000 -> 4, 65535 -> 255); 16-bit colour PNGs PIL itself reduces to 8 bits by their high byte
      (floor(v / 256), at most one level below the rounded value);
    - float ("F") images must hold finite values in [0, 1], scaled by 255 with rounding (0.5 -> 128);
    - anything else (32-bit integer "I" images, signed 16-bit, floats outside [0, 1]) is refused: its range is
      not known, and guessing it would read the data silently wrong. Convert such files to 8-bit first.
    """
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or (mode == "I" and image.format == "PNG"):
        values = np.asarray(image).astype(np.int64)
        if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
            raise ValueError(f"its mode {mode!r} (16-bit) holds values from {values.min()} to {values.max()}, "
                             f"outside the 16-bit range 0..65535; convert it to 8-bit first.")
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0.0 and values.max() <= 1.0):
            raise ValueError(f"it is a float image (mode 'F') with values from {np.nanmin(values)} to "
                             f"{np.nanmax(values)}; only floats in [0, 1] are read (as round(255 * v)); scale it to "
                             f"[0, 1] or convert it to 8-bit first.")
        return Image.fromarray(np.floor(values * 255.0 + 0.5).astype(np.uint8))
    if mode in ("I", "I;16S", "I;16BS", "I;32", "I;32S") or mode.startswith(("I;", "F;")):
        raise ValueError(f"its mode {mode!r} holds integers of unknown range; only 8-bit, unsigned "
                         f"16-bit and float [0, 1] images are read. Convert it to 8-bit first.")
    return image


def decode_file(path: str, *, image_size: tuple[int, int] | None, color_mode: str) -> np.ndarray:
    """One image file -> (h, w, c) uint8 (c = 3 for "rgb", 1 for "grayscale"), resized bilinearly to
    `image_size` = (height, width) when given. 16-bit and float [0, 1] images are scaled to 8 bits, other
    high-depth modes refused (see :func:`to_8bit`). Raises ValueError naming the file if PIL cannot decode it."""
    try:
        with Image.open(path) as image:
            image = to_8bit(image).convert(_MODES[color_mode])
            if image_size is not None and image.size != (image_size[1], image_size[0]):
                image = image.resize((image_size[1], image_size[0]), Image.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... for damaged files
        raise ValueError(
            f"load_image_folder: cannot decode image {path!r} ({err}); fix or delete it, or pass "
            f"skip_corrupt=True to skip unreadable files with a warning."
        ) from err
    return array[..., None] if array.ndim == 2 else array


def _validation_mask(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Per class, round(fraction * n_class) files drawn without replacement by numpy's PCG64(seed) go to
    validation (stratified, deterministic)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        mask[rng.permutation(members)[: int(round(fraction * len(members)))]] = True
    return mask


def load_image_folder(
    root: str | os.PathLike,
    split: str = "train",
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str = "rgb",
    validation_fraction: float = 0.0,
    seed: int = 0,
    skip_corrupt: bool = False,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Decode one split of an image folder: images (n, h, w, c) uint8 NHWC, labels (n,) int32, class names.

    `validation_fraction` (in [0, 1)) moves that share of each class of the "train" split, chosen
    deterministically from `seed`, into a "validation" split. Without `image_size` all images must share one
    size. With `skip_corrupt`, unreadable files are skipped and counted in one warning instead of raising.
    """
    root = os.fspath(root)
    skip_corrupt = shapes.check_flag(skip_corrupt, "skip_corrupt", "load_image_folder")
    if color_mode not in _MODES:
        raise ValueError(f"load_image_folder: color_mode={color_mode!r}; valid values are {tuple(_MODES)}.")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(
            f"load_image_folder: validation_fraction={validation_fraction!r}; it must be in [0, 1) (e.g. 0.2)."
        )
    image_size = as_image_size(image_size, "load_image_folder")
    splits, classes = folder_layout(root)
    carve = split == "validation" and "validation" not in splits and validation_fraction > 0
    source_split = "train" if carve else split
    valid = sorted(splits) + (["validation"] if validation_fraction > 0 and "validation" not in splits else [])
    if source_split not in splits:
        raise ValueError(
            f"load_image_folder: split {split!r} is not in {root!r}; its splits are {valid}"
            + ("" if "validation" in valid else " (pass validation_fraction > 0 for a 'validation' split)")
            + "."
        )
    files, labels = [], []
    for k, c in enumerate(classes):
        folder = os.path.join(splits[source_split], c)
        if os.path.isdir(folder):
            names = _images_in(folder)
            files += [os.path.join(folder, n) for n in names]
            labels += [k] * len(names)
    labels = np.asarray(labels, dtype=np.int32)
    if validation_fraction > 0 and source_split == "train" and "validation" not in splits:
        mask = _validation_mask(labels, validation_fraction, seed)
        keep = mask if carve else ~mask
        files, labels = [f for f, m in zip(files, keep) if m], labels[keep]

    images, kept, bad = [], [], []
    for i, path in enumerate(tqdm(files, desc=f"decoding {split}", unit=" images", disable=bar_disabled(progress))):
        try:
            images.append(decode_file(path, image_size=image_size, color_mode=color_mode))
            kept.append(i)
        except ValueError:
            if not skip_corrupt:
                raise
            bad.append(path)
    if bad:
        warnings.warn(
            f"load_image_folder: skipped {len(bad)} unreadable image(s) in {root!r}, e.g. {bad[:3]}.", stacklevel=2
        )
    if not images:
        raise ValueError(f"load_image_folder: split {split!r} of {root!r} has no readable images.")
    sizes = sorted({im.shape for im in images})
    if len(sizes) > 1:
        raise ValueError(
            f"load_image_folder: images in {root!r} have different sizes {sizes[:4]}; pass "
            f"image_size=(height, width) to resize them to one size."
        )
    return np.stack(images), labels[np.asarray(kept, dtype=np.int64)], classes
