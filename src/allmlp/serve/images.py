"""Uploaded images made into what an image run's model sees: decoded safely, channels converted, resized, normalised."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from ..data.images import get_dataset, normalize

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 16_000_000  # decoded width x height; a PNG of 50 megapixels can be a few kilobytes (a decompression bomb)
FORMATS = ("PNG", "JPEG")
SHOWN_SIDE = 224  # the model's-eye view is enlarged (nearest neighbour) to about this many pixels a side


class ImageRejected(ValueError):
    """An upload that is not a usable PNG/JPEG image; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def input_spec(cfg) -> tuple[tuple[int, int, int], tuple[float, ...], tuple[float, ...], tuple[str, ...]]:
    """(C, H, W) the model takes, the data set's per-channel mean and std, and its class names."""
    spec = get_dataset(cfg.data.name)
    channels = int(cfg.model.args.get("in_chans", spec.shape[0]))
    size = cfg.model.args.get("img_size", spec.shape[1:])
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (channels, int(height), int(width)), spec.mean, spec.std, spec.classes


def decode_image(data: bytes):
    """A PIL image from PNG/JPEG bytes: size and pixel count checked from the header before any pixel is decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRejected(f"the image is {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,}", 413)
    if not data:
        raise ImageRejected("the upload is empty: send a PNG or JPEG image")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check: an error past twice this, a warning past it...
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # ...but those we refuse below
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise ImageRejected("not a PNG or JPEG image", 415) from None
    except Image.DecompressionBombError:
        raise ImageRejected(f"the image has more than {MAX_PIXELS:,} pixels (the limit)", 413) from None
    except (OSError, SyntaxError, ValueError) as err:  # a PNG/JPEG signature followed by a broken header
        raise ImageRejected(f"a broken PNG or JPEG header ({str(err).splitlines()[0] or 'corrupt'})") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageRejected(f"the image is {width} x {height} = {width * height:,} pixels; the limit is "
                            f"{MAX_PIXELS:,}", 413)
    try:
        image.load()
        return ImageOps.exif_transpose(image)  # phone photos: upright as they were shot
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # truncated or corrupt pixels
        raise ImageRejected(f"the {image.format} image cannot be decoded ({str(err).splitlines()[0] or 'corrupt'})") \
            from None


def to_model_pixels(image, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (C, H, W): alpha over black (the data sets' background), grey or RGB, centre-cropped square, resized."""
    from PIL import Image

    channels, height, width = shape
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    image = image.convert("L" if channels == 1 else "RGB")
    side = min(image.size)  # crop the middle to the model's aspect ratio, so nothing is stretched
    crop_w, crop_h = (side, side * height // width) if width >= height else (side * width // height, side)
    left, top = (image.width - crop_w) // 2, (image.height - crop_h) // 2
    image = image.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.BOX
                                                                        if crop_w > width else Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8).reshape(height, width, -1)  # (H, W, C)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)  # (C, H, W)


def model_input(image, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised float (1, C, H, W) the model takes, the uint8 (C, H, W) it was made from)."""
    shape, mean, std, _ = input_spec(cfg)
    pixels = to_model_pixels(image, shape)
    return normalize(pixels[None], mean, std), pixels


def png_bytes(pixels: torch.Tensor, side: int = SHOWN_SIDE) -> bytes:
    """uint8 (C, H, W) as a PNG, enlarged by a whole factor (nearest neighbour) so that small images stay sharp."""
    from PIL import Image

    factor = max(1, side // max(pixels.shape[1:]))
    array = pixels.repeat_interleave(factor, 1).repeat_interleave(factor, 2).permute(1, 2, 0).numpy()  # (H, W, C)
    image = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def top_classes(logits: torch.Tensor, classes: tuple[str, ...], k: int = 5) -> list[dict]:
    """The k likeliest classes of logits (V,) with their softmax probabilities, likeliest first."""
    probs = logits.float().softmax(-1)
    values, indices = probs.topk(min(k, probs.numel()))
    return [{"index": int(i), "label": classes[i] if i < len(classes) else str(int(i)), "probability": float(p)}
            for p, i in zip(values.tolist(), indices.tolist())]
