"""Constructed real/fake image sets with a known artifact, for checking the analysis tools.

"Real" images are smooth random colour fields with a little pixel noise. "Fake" images are drawn
the same way plus a period-2 checkerboard (a stand-in for a generator's up-sampling artifact) of
`amplitude` grey levels, over the whole picture or only a region (`region=(top, left, bottom,
right)` as fractions). Nothing but the checkerboard tells the classes apart.

    python -m deepvrm.analysis.synthetic --output DIR [--per-class 24] [--size 112] [--region 0,0.5,0.5,1]

writes `DIR/real/*.png` and `DIR/fake/*.png`, a folder `deepvrm probe/attribute --data` reads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def smooth_image(rng: np.random.Generator, size: int = 112) -> np.ndarray:
    """A smooth random colour field, uint8 [size, size, 3], values kept in 40..215."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.empty((size, size, 3))
    for channel in range(3):
        value = rng.uniform(70, 185)
        for _ in range(3):
            fx, fy = rng.uniform(0, 2.0, 2)
            value = value + rng.uniform(8, 25) * np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
        image[..., channel] = value
    image += rng.normal(0, 2.0, image.shape)
    return np.clip(np.rint(image), 40, 215).astype(np.uint8)


def checkerboard(size: int, amplitude: float = 12.0, region: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """A +-amplitude period-2 checkerboard [size, size, 1] (zero outside `region`)."""
    y, x = np.mgrid[0:size, 0:size]
    pattern = np.where((x + y) % 2 == 0, amplitude, -amplitude).astype(np.float64)
    if region is not None:
        top, left, bottom, right = (int(round(f * size)) for f in region)
        mask = np.zeros((size, size))
        mask[top:bottom, left:right] = 1
        pattern *= mask
    return pattern[..., None]


def make_pair_images(per_class: int, size: int = 112, seed: int = 0, amplitude: float = 12.0, region=None):
    """(images, labels): `per_class` real and fake images each, alternating real, fake."""
    rng = np.random.default_rng(seed)
    cb = checkerboard(size, amplitude, region)
    images, labels = [], []
    for _ in range(per_class):
        for label in (0, 1):
            image = smooth_image(rng, size).astype(np.float64)
            if label:
                image = image + cb
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            labels.append(label)
    return images, labels


def write_dataset(root: str | Path, per_class: int = 24, size: int = 112, seed: int = 0, amplitude: float = 12.0, region=None) -> Path:
    """`root/real/*.png` and `root/fake/*.png`, as `make_pair_images` draws them."""
    from PIL import Image

    root = Path(root)
    for name in ("real", "fake"):
        (root / name).mkdir(parents=True, exist_ok=True)
    images, labels = make_pair_images(per_class, size, seed, amplitude, region)
    for index, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / ("fake" if label else "real") / f"{index:04d}.png")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepvrm.analysis.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True)
    parser.add_argument("--per-class", type=int, default=24)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amplitude", type=float, default=12.0)
    parser.add_argument("--region", default=None, help="top,left,bottom,right as fractions, e.g. 0,0.5,0.5,1 (top-right quarter)")
    args = parser.parse_args(argv)
    region = tuple(float(v) for v in args.region.split(",")) if args.region else None
    root = write_dataset(args.output, args.per_class, args.size, args.seed, args.amplitude, region)
    print(f"Wrote {2 * args.per_class} images to {root}/real and {root}/fake")
    return 0


if __name__ == "__main__":
    sys.exit(main())
