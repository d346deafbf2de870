"""Caffe-faithful transforms: crop window, flip, BGR mean subtraction, test-time resize."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from replication.data.transforms import CAFFE_MEAN_BGR, CaffeTestTransform, CaffeTrainTransform


def _ramp(size=8):
    img = np.zeros((size, size, 3), np.uint8)
    img[..., 0] = np.arange(size)[None, :] * 10          # B varies along x
    img[..., 1] = np.arange(size)[:, None] * 10          # G varies along y
    img[..., 2] = 200
    return img


def test_train_crop_is_a_window_of_the_image_minus_mean():
    img = _ramp(8)
    t = CaffeTrainTransform(crop=5, load_size=8, flip=False)
    torch.manual_seed(0)
    for _ in range(20):
        out = t(img).numpy()
        assert out.shape == (3, 5, 5) and out.dtype == np.float32
        bgr = out + np.asarray(CAFFE_MEAN_BGR, np.float32)[:, None, None]
        x0, y0 = int(bgr[0, 0, 0]) // 10, int(bgr[1, 0, 0]) // 10
        assert 0 <= x0 <= 3 and 0 <= y0 <= 3
        np.testing.assert_array_equal(bgr.transpose(1, 2, 0), img[y0:y0 + 5, x0:x0 + 5].astype(np.float32))


def test_train_offsets_cover_every_position_and_flip_half_the_time():
    img = _ramp(8)
    t = CaffeTrainTransform(crop=6, load_size=8, flip=True)
    torch.manual_seed(1)
    xs, flips = set(), 0
    for _ in range(400):
        b = t(img).numpy()[0] + CAFFE_MEAN_BGR[0]
        flipped = b[0, 0] > b[0, -1]
        flips += flipped
        xs.add(int(min(b[0, 0], b[0, -1])) // 10)
    assert xs == {0, 1, 2}                      # Caffe: Rand(width - crop + 1)
    assert 150 < flips < 250


def test_train_resizes_to_load_size_first():
    img = np.full((16, 12, 3), 50, np.uint8)
    out = CaffeTrainTransform(crop=6, load_size=8, flip=False)(img)
    assert out.shape == (3, 6, 6)
    np.testing.assert_allclose(out[0].numpy(), 50 - CAFFE_MEAN_BGR[0])


def test_test_resize_and_center_crop():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    resized = CaffeTestTransform(size=6, load_size=10, mode="resize")(img).numpy()
    expected = cv2.resize(img, (6, 6), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    np.testing.assert_allclose(resized.transpose(1, 2, 0) + np.asarray(CAFFE_MEAN_BGR, np.float32), expected)
    center = CaffeTestTransform(size=6, load_size=10, mode="center-crop")(img).numpy()
    np.testing.assert_allclose(center.transpose(1, 2, 0) + np.asarray(CAFFE_MEAN_BGR, np.float32),
                               img[2:8, 2:8].astype(np.float32))


def test_bad_arguments():
    with pytest.raises(ValueError):
        CaffeTrainTransform(crop=9, load_size=8)
    with pytest.raises(ValueError):
        CaffeTestTransform(size=4, load_size=8, mode="zoom")


@pytest.mark.parametrize("norm, mean, std", [
    ("imagenet", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("inception", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
])
def test_rgb_input_norms_against_a_hand_computation(norm, mean, std):
    img = np.zeros((4, 4, 3), np.uint8)
    img[...] = (10, 100, 250)  # B, G, R
    out = CaffeTestTransform(4, 4, input_norm=norm)(img)
    rgb = (250, 100, 10)
    for c in range(3):
        want = (rgb[c] / 255.0 - mean[c]) / std[c]
        assert torch.allclose(out[c], torch.full((4, 4), want), atol=1e-6), (c, out[c, 0, 0], want)
    caffe = CaffeTestTransform(4, 4)(img)  # the default: BGR minus (104, 117, 123), no std
    assert torch.equal(caffe[:, 0, 0], torch.tensor([10 - 104.0, 100 - 117.0, 250 - 123.0]))
    assert torch.equal(caffe, CaffeTestTransform(4, 4, input_norm="caffe")(img))


def test_train_transform_input_norm_keeps_the_crop_and_flip_stream():
    img = _ramp()
    torch.manual_seed(3)
    caffe = CaffeTrainTransform(crop=6, load_size=8, flip=True)(img)
    torch.manual_seed(3)
    rgb = CaffeTrainTransform(crop=6, load_size=8, flip=True, input_norm="imagenet")(img)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    bgr_255 = caffe + torch.tensor(CAFFE_MEAN_BGR)[:, None, None]
    want = (bgr_255.flip(0) / 255.0 - torch.tensor(mean, dtype=torch.float32)[:, None, None]) \
        / torch.tensor(std, dtype=torch.float32)[:, None, None]
    assert torch.allclose(rgb, want, atol=1e-5)
    with pytest.raises(ValueError, match="input normalisation"):
        CaffeTrainTransform(crop=6, load_size=8, input_norm="rgb")
