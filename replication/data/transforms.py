"""Caffe-faithful image transforms, as small callables on BGR uint8 arrays.

See docs/datasets.md#stored-size-and-transforms.

Facts from SRN's Caffe setup and the paper: images are decoded with OpenCV (BGR, uint8) and
stored at ``load_size``×``load_size`` (256; generated images are resized to it at load). Train:
random ``crop``×``crop`` window (224), random horizontal flip, subtract the BGR mean
(104, 117, 123) on the 0–255 scale, no division by a std. Test: the whole image resized to
``size``×``size`` (SRN's test script), or a center crop as an option.

``input_norm`` (config key ``data.input_norm``, :data:`~replication.vocabulary.INPUT_NORMS`) picks the
pixel normalisation: ``caffe`` (the default, the above: bit-identical to before the option existed),
or ``imagenet`` / ``inception`` for ImageNet weights converted from timm: BGR → RGB, divide by 255,
subtract the RGB mean and divide by the std of :data:`~replication.vocabulary.INPUT_NORM_RGB_STATS`.

Randomness comes from torch's global RNG, which ``DataLoader`` seeds per worker from the
sampler's base seed — so a run resumed from a checkpoint replays the same crops and flips.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from replication.vocabulary import INPUT_NORM_RGB_STATS, INPUT_NORMS

CAFFE = "caffe"
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)
TEST_MODES = ("resize", "center-crop")


def _to_load_size(image: np.ndarray, load_size: int) -> np.ndarray:
    if image.shape[0] == load_size and image.shape[1] == load_size:
        return image
    return cv2.resize(image, (load_size, load_size), interpolation=cv2.INTER_LINEAR)


def _check_norm(input_norm: str) -> str:
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"unknown input normalisation {input_norm!r}; expected one of {INPUT_NORMS}")
    return input_norm


def _norm_repr(input_norm: str) -> str:
    return "" if input_norm == CAFFE else f", input_norm={input_norm!r}"  # Caffe's repr as before the option


def _to_tensor(image: np.ndarray, mean_bgr: np.ndarray, input_norm: str = CAFFE) -> torch.Tensor:
    if input_norm == CAFFE:
        chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        chw -= mean_bgr[:, None, None]
        return torch.from_numpy(chw)
    mean, std = (np.asarray(v, dtype=np.float32)[:, None, None] for v in INPUT_NORM_RGB_STATS[input_norm])
    chw = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)  # BGR → RGB
    chw /= 255.0
    chw -= mean
    chw /= std
    return torch.from_numpy(chw)


class CaffeTrainTransform:
    """Train preset: resize to ``load_size`` if needed, random ``crop``, random flip, mean subtraction.

    Returns a float32 C×H×W tensor: with ``input_norm="caffe"`` in BGR order on the 0–255 scale minus
    ``mean_bgr``; otherwise RGB on 0–1, normalised by the mean and std of ``input_norm``.
    """

    def __init__(
        self, crop: int, load_size: int, flip: bool = True, mean_bgr: Sequence[float] = CAFFE_MEAN_BGR,
        input_norm: str = CAFFE,
    ) -> None:
        if crop > load_size:
            raise ValueError(f"crop {crop} is larger than the load size {load_size}")
        self.crop, self.load_size, self.flip = int(crop), int(load_size), bool(flip)
        self.mean_bgr = np.asarray(mean_bgr, dtype=np.float32)
        self.input_norm = _check_norm(input_norm)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        image = _to_load_size(image, self.load_size)
        span = self.load_size - self.crop + 1  # Caffe: h_off = Rand(height - crop_size + 1)
        offsets = torch.randint(0, span, (2,))
        y, x = int(offsets[0]), int(offsets[1])
        image = image[y : y + self.crop, x : x + self.crop]
        if self.flip and bool(torch.randint(0, 2, (1,))):
            image = image[:, ::-1]
        return _to_tensor(image, self.mean_bgr, self.input_norm)

    def __repr__(self) -> str:
        return (f"CaffeTrainTransform(crop={self.crop}, load_size={self.load_size}, flip={self.flip}"
                f"{_norm_repr(self.input_norm)})")


class CaffeTestTransform:
    """Test preset: ``resize`` the whole image to ``size`` (SRN) or ``center-crop`` ``size`` from ``load_size``."""

    def __init__(
        self, size: int, load_size: int, mode: str = "resize", mean_bgr: Sequence[float] = CAFFE_MEAN_BGR,
        input_norm: str = CAFFE,
    ) -> None:
        if mode not in TEST_MODES:
            raise ValueError(f"unknown test transform mode {mode!r}; expected one of {TEST_MODES}")
        self.size, self.load_size, self.mode = int(size), int(load_size), mode
        self.mean_bgr = np.asarray(mean_bgr, dtype=np.float32)
        self.input_norm = _check_norm(input_norm)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        if self.mode == "resize":
            image = _to_load_size(image, self.size)
        else:
            image = _to_load_size(image, self.load_size)
            off = (self.load_size - self.size) // 2  # Caffe: (height - crop_size) / 2
            image = image[off : off + self.size, off : off + self.size]
        return _to_tensor(image, self.mean_bgr, self.input_norm)

    def __repr__(self) -> str:
        return (f"CaffeTestTransform(size={self.size}, load_size={self.load_size}, mode={self.mode!r}"
                f"{_norm_repr(self.input_norm)})")
