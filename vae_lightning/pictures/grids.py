"""Digit grids (torchvision's make_grid) and PNG files: every function returns an image as a float
tensor [3, H, W] in [0, 1]; `png_bytes` encodes one for an event file and a PNG file alike."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from torch import Tensor
from torchvision.utils import make_grid

from vae_lightning.core.files import write_atomically


class Decoder(Protocol):
    """What a grid of decoded digits needs of a trained VAE (`model.VAEModule` is one): its decoder's pixel
    means for latents [N, D] as images [N, 1, 28, 28], and the device its weights are on."""

    device: torch.device

    def decode(self, z: Tensor) -> Tensor: ...


log = logging.getLogger(__name__)

PAD_VALUE = 0.5  # grey lines between the digits of a grid


def image_grid(images: Tensor, nrow: int, padding: int = 2) -> Tensor:
    """Images [B, 1, H, W] as one grid of `nrow` per row, separated by grey lines of `padding` pixels."""
    return make_grid(images.cpu(), nrow=nrow, padding=padding, pad_value=PAD_VALUE)


@torch.no_grad()
def decoded_grid(module: Decoder, z: Tensor, nrow: int, padding: int = 2) -> Tensor:
    """The decoder's pixel means for latents z, as one grid of `nrow` digits per row."""
    return image_grid(module.decode(z.to(module.device)), nrow, padding)


def reconstruction_grid(images: Tensor, reconstructions: Tensor, nrow: int) -> Tensor:
    """Rows of `nrow` images, each row directly above the row of their reconstructions."""
    cols = min(nrow, len(images))
    n = len(images) // cols * cols
    pairs = torch.stack([images[:n].cpu(), reconstructions[:n].cpu()])  # [2, n, 1, 28, 28]
    interleaved = pairs.unflatten(1, (n // cols, cols)).transpose(0, 1).flatten(0, 2)
    return image_grid(interleaved, cols)


def to_uint8(image: Tensor) -> np.ndarray:
    """[3, H, W] in [0, 1] -> [H, W, 3] uint8 (rounded to the nearest level, as torchvision's save_image)."""
    return image.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def png_bytes(image: Tensor, text: dict[str, str] | None = None) -> bytes:
    """An image [3, H, W] in [0, 1] encoded as PNG, once, for both the event file and the PNG file; `text`:
    PNG text chunks (key: value) to store with it.

    Fast zlib level 1: these are mostly black digits and flat figure backgrounds, which compress
    well anyway, and the encoding is a large part of the callback's time."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", compress_level=1, pnginfo=info)
    return buffer.getvalue()


def write_png(image: Tensor, path: Path, text: dict[str, str] | None = None) -> Path:
    """Save an image [3, H, W] as a PNG file at `path` (its folder created), atomically: a failed write leaves
    the earlier file, if any, and no part of the new one."""
    data = png_bytes(image, text)
    write_atomically(path, lambda f: f.write(data), size=len(data))
    log.info("wrote %s", path)
    return path
