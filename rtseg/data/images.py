"""One conversion of an image in any usual form to 8-bit RGB, shared by every reader.

Files (:func:`rtseg.data.io.read_image`), PIL images and numpy arrays given to a
:class:`~rtseg.Segmenter` all go through :func:`rgb_from_pil` or :func:`rgb_from_array`, so an
image gives the same pixels whichever way it is handed over:

* 16-bit grey (PIL modes ``I;16*``, a mode ``I`` image with values in 0–65535, a uint16 array)
  is scaled to 8 bits (``value >> 8``); Pillow's own ``convert("RGB")`` would clip it to white.
* palette, grey, bilevel, CMYK, YCbCr and the like are converted with Pillow's conversions;
  an alpha channel (RGBA, LA, PA, an H×W×4 or H×W×2 array) is dropped.
* a float array is taken as values in [0, 1] and refused outside that range, as are
  floating-point PIL images (mode ``F``).

:func:`upright` applies the EXIF orientation a camera wrote, as every image viewer does. Only
the inference path (``rtseg.load(...)(image)``, ``rtseg predict``) uses it: data sets store
their labels for the pixels as stored, so the training and evaluation loaders never rotate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UsageError

_16_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
# Tolerance for float images that went through arithmetic (1.0000001 is still "1").
FLOAT_SLACK = 1e-3


def upright(image: Any) -> Any:
    """``image`` (a PIL image) turned as its EXIF Orientation tag says; unchanged without one."""
    from PIL import ImageOps

    orientation = image.getexif().get(0x0112, 1)  # 0x0112: the Orientation tag
    return image if orientation == 1 else ImageOps.exif_transpose(image)


def rgb_from_pil(image: Any) -> np.ndarray:
    """H×W×3 uint8 RGB from a PIL image of any usual mode (see the module's rules).

    Raises:
        UsageError: floating-point values (mode ``F``) or 32-bit values outside 0–65535.
    """
    mode = image.mode
    if mode in _16_BIT_MODES:
        return _grey_to_rgb(np.asarray(image).astype(np.uint32) >> 8)
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise UsageError(f"image has 32-bit values {values.min()}…{values.max()} (mode I); "
                             "expected 8-bit or 16-bit values: save it as 8-bit RGB")
        return _grey_to_rgb(values.astype(np.uint32) >> 8)
    if mode == "F":
        raise UsageError("image has floating-point values (mode F); save it as 8-bit RGB")
    rgb = image if mode == "RGB" else image.convert("RGB")
    return np.array(rgb, dtype=np.uint8)


def rgb_from_array(array: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 RGB from an H×W, H×W×1, H×W×2 (grey + alpha), H×W×3 (RGB) or H×W×4 (RGBA)
    array of uint8, uint16 (scaled to 8 bits), bool or float in [0, 1].

    Raises:
        UsageError: another shape or dtype, or float values outside [0, 1] (or not finite).
    """
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise UsageError(f"expected an H×W×3 RGB (or H×W grey, H×W×4 RGBA) image array, got "
                         f"shape {array.shape}")
    channels = array.shape[2]
    array = array[..., :3] if channels >= 3 else np.repeat(array[..., :1], 3, axis=2)
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        check_unit_range(float(array.min()), float(array.max()), "float image array")
        return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    raise UsageError(f"expected a uint8 (0–255), uint16 or float ([0, 1]) image array, got "
                     f"{array.dtype}")


def check_unit_range(low: float, high: float, what: str) -> None:
    """UsageError unless [low, high] lies in [0, 1] (give low/high of the image's values)."""
    if not (low >= -FLOAT_SLACK and high <= 1 + FLOAT_SLACK):  # also catches NaN
        raise UsageError(f"{what} has values in [{low:g}, {high:g}]; expected floats in "
                         "[0, 1] (or uint8 0–255): divide a 0–255 image by 255")


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
