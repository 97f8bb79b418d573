"""Training-time augmentation (lecture slide 13), applied to each training batch with the run's seeded
``augment`` generator; validation and test data are never augmented.

- noise_std: x + N(0, noise_std^2), for any data;
- images (rows are flattened height x width pictures):
  shift by up to ``shift`` pixels and rotate by up to ``rotate`` degrees -- one nearest-neighbour resampling
  of the picture about its centre, the uncovered border filled with 0 -- then ``flip`` left-right with
  probability 1/2, then ``cutout``: a random square of side ``cutout`` set to 0 (DeVries & Taylor 2017).
"""

from __future__ import annotations

import numpy as np


class Augmenter:
    def __init__(self, spec, image_shape: tuple[int, int] | None, rng: np.random.Generator):
        self.spec = spec
        self.image_shape = image_shape
        self.rng = rng
        self.active = bool(spec.noise_std) or (image_shape is not None and spec.for_images)
        if image_shape is not None:
            height, width = image_shape
            rows, cols = np.mgrid[0:height, 0:width]
            self.centre = ((height - 1) / 2, (width - 1) / 2)
            self.grid = (rows - self.centre[0], cols - self.centre[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        spec = self.spec
        if self.image_shape is not None and spec.for_images:
            images = x.reshape(len(x), *self.image_shape)
            if spec.shift or spec.rotate:
                images = self.affine(images)
            if spec.flip:
                flipped = self.rng.random(len(images)) < 0.5
                images = np.where(flipped[:, None, None], images[:, :, ::-1], images)
            if spec.cutout:
                images = self.cut(images)
            x = images.reshape(len(x), -1)
        if spec.noise_std:
            x = x + self.rng.normal(0.0, spec.noise_std, x.shape).astype(x.dtype)
        return x

    def affine(self, images: np.ndarray) -> np.ndarray:
        """Each output pixel p takes the input pixel R(-angle) (p - c - shift) + c, rounded; outside -> 0."""
        n, height, width = images.shape
        angle = np.deg2rad(self.rng.uniform(-self.spec.rotate, self.spec.rotate, n))[:, None, None]
        shift = self.rng.integers(-self.spec.shift, self.spec.shift + 1, (2, n))[:, :, None, None]
        rows, cols = self.grid[0] - shift[0], self.grid[1] - shift[1]
        cos, sin = np.cos(angle), np.sin(angle)
        src_rows = np.rint(cos * rows + sin * cols + self.centre[0]).astype(np.intp)
        src_cols = np.rint(-sin * rows + cos * cols + self.centre[1]).astype(np.intp)
        inside = (src_rows >= 0) & (src_rows < height) & (src_cols >= 0) & (src_cols < width)
        flat_index = np.clip(src_rows, 0, height - 1) * width + np.clip(src_cols, 0, width - 1)
        out = np.take_along_axis(images.reshape(n, -1), flat_index.reshape(n, -1), axis=1).reshape(images.shape)
        return np.where(inside, out, 0).astype(images.dtype)

    def cut(self, images: np.ndarray) -> np.ndarray:
        n, height, width = images.shape
        side = self.spec.cutout
        top = self.rng.integers(-(side // 2), height - side // 2, n)[:, None, None]
        left = self.rng.integers(-(side // 2), width - side // 2, n)[:, None, None]
        rows = np.arange(height)[None, :, None]
        cols = np.arange(width)[None, None, :]
        hole = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        return np.where(hole, 0, images).astype(images.dtype)
