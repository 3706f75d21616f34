#!/usr/bin/env python3
"""A reference point for the demo model: how separable the demo data is by simple pixel statistics.

    python demo/dct_probe.py [--data demo/data]

For every image: the demo model's own preprocessing (224x224, 14x14 patches), the responses of the
128 DCT filters that `deepvrm init --patch-embedding dct` starts the patch embedding from, each
patch's response vector normalised to unit RMS, the mean squared response per filter over the
image's patches, its logarithm: 128 numbers. A logistic regression trained on the training split
(reals + one fake source) is scored on the validation and test splits (ROC-AUC).

No deep network is involved: it says whether the generator traces are in the data at all, so the
demo model's numbers can be read against it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("comfyui", "autoencoder")


def dct_log_energies(paths: list[Path], batch: int = 64) -> np.ndarray:
    import torch
    from PIL import Image

    from deepvrm import DeepVRMConfig, DeepVRMImageProcessor

    from deepvrm.configuration import preset_config
    from deepvrm.configuration.init_model import dct_patch_filters

    config = preset_config("small")
    processor = DeepVRMImageProcessor.from_config(config)
    vision = config.vision_config
    filters = dct_patch_filters(vision.hidden_size, 3, vision.temporal_patch_size, vision.patch_size).float()
    features = []
    for start in range(0, len(paths), batch):
        images = [Image.open(p).convert("RGB") for p in paths[start : start + batch]]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].view(-1, *filters.shape[1:])
        with torch.no_grad():
            responses = torch.einsum("nctij,kctij->nk", pixels, filters).view(len(images), -1, filters.shape[0])
            responses = responses / responses.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-8)
            features.append(torch.log(responses.pow(2).mean(1) + 1e-6).numpy())
    return np.concatenate(features)


def _samples(data: Path, name: str) -> tuple[list[Path], list[int]]:
    records = json.loads((data / name).read_text())
    paths = [data / r["images"][0] for r in records]
    labels = [int(r["messages"][-1]["content"].strip().lower().startswith("fake")) for r in records]
    return paths, labels


def probe(data: Path) -> dict:
    """{source: {"validation": ROC-AUC, "test": ROC-AUC}}."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train_paths, train_labels = _samples(data, "train.json")
    train_features = dict(zip(train_paths, dct_log_energies(train_paths)))
    results = {}
    for source in SOURCES:
        # the training split's reals plus this source's fakes (autoencoder fakes are named so)
        keep = [i for i, (p, y) in enumerate(zip(train_paths, train_labels)) if y == 0 or p.name.startswith(source)]
        model = LogisticRegression(max_iter=5000).fit([train_features[train_paths[i]] for i in keep], [train_labels[i] for i in keep])
        results[source] = {}
        for split in ("validation", "test"):
            paths, labels = _samples(data, f"{split}_{source}.json")
            results[source][split] = round(float(roc_auc_score(labels, model.predict_proba(dct_log_energies(paths))[:, 1])), 4)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "demo" / "data"), help="dataset built by demo/build_dataset.py")
    args = parser.parse_args(argv)
    for source, scores in probe(Path(args.data)).items():
        print(f"{source:<12} ROC-AUC  validation {scores['validation']:.3f}  test {scores['test']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
