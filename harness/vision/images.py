"""Input images for vision benchmarks: seeded synthetic camera frames, or a folder of image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness.errors import UserError, first_line

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass
class ImageSource:
    """A pool of uint8 HxWx3 images that batches cycle through."""

    images: list[np.ndarray]
    bgr: bool  # True: channels are B, G, R (OpenCV/camera order); False: R, G, B
    description: str

    def batch(self, index: int, batch_size: int) -> list[np.ndarray]:
        n = len(self.images)
        start = index * batch_size
        return [self.images[(start + j) % n] for j in range(batch_size)]


def synthetic_images(count: int, height: int, width: int, seed: int) -> ImageSource:
    """`count` seeded random BGR frames of height x width, as a camera driver would hand them over."""
    if count < 1 or height < 1 or width < 1:
        raise UserError(f"image size and count must be positive, got {count} x {width}x{height}")
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    return ImageSource(images, bgr=True, description=f"synthetic {width}x{height} BGR, seed {seed}")


def folder_images(folder: Path, limit: int = 64) -> ImageSource:
    """Up to `limit` JPEG/PNG files from `folder` (sorted by name), decoded to RGB in memory."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise UserError(f"no .jpg/.jpeg/.png files in {folder}")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                images.append(np.ascontiguousarray(rgb8(im)))
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"cannot decode image {f}: {first_line(e)}") from None
    return ImageSource(images, bgr=False, description=f"{len(images)} files from {folder}")


def rgb8(im) -> np.ndarray:
    """An opened image as 8-bit RGB, HxWx3. 16-bit greyscale (PNG) is scaled 0..65535 -> 0..255
    (Pillow's convert would saturate it to 0/255); 16-bit colour PNGs Pillow already reduces to 8 bits."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.clip(np.round(np.asarray(im, np.float64) / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        raise UserError(f"{im.filename}: floating-point images are not camera frames; convert to 8-bit first")
    return np.asarray(im.convert("RGB"))


def parse_size(text: str) -> tuple[int, int]:
    """'1920x1080' -> (height, width) = (1080, 1920)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"image size must look like 1920x1080, got {text!r}") from None
    if w < 1 or h < 1:
        raise UserError(f"image size must be positive, got {text!r}")
    return h, w
