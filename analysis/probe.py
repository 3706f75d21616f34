"""`deepvrm probe`: layer-wise linear probes of real-vs-fake information (the paper's analysis).

    deepvrm probe --model ID_OR_DIR --data DATA [DATA ...] [--max-images N] [--report DIR]

The model reads each image once (batched, no gradients) under the detection prompt. At every
depth it keeps two representations of the image: the hidden states at the image-token positions,
mean-pooled, and the hidden state of the last prompt token (where the answer is read). A
logistic-regression probe (standardised features, L2) is cross-validated per depth and per
representation, and its accuracy and ROC-AUC are reported with their spread over the folds.

Depth ("layer") i is the hidden state after i decoder layers, as transformers' `hidden_states`
index them: 0 is the input embeddings (the image tokens then hold the vision tower's output), i is
the output of decoder layer i-1 = the input of decoder layer i, and N is the final, normed output.
On a Deep-VRM the fusion happens at the input of decoder layer K = `injection_layer`, inside it:
depth K is still before the injection, depths K+1..N are after it.

Suggested injection layer (the first layer after which the semantic curve stops rising): the
smallest i in 1..N-1 whose image-token probe accuracy on the semantic dataset (the first --data,
or --semantic NAME) is within a tolerance of every deeper layer's, tolerance = max(--tolerance,
one standard error of the fold accuracies at the best layer). Injecting at i keeps the layers that
build the semantics (0..i-1) untouched, as the paper does with 16 of Qwen2.5-VL-7B's 28 layers.

Features are streamed to disk (one float32 memory map per dataset, [depth, representation, image,
hidden]), so memory stays bounded by one batch of activations whatever the number of images.
Works on Deep-VRM models and on plain Qwen2.5-VL checkpoints (folder or Hub id).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from deepvrm.cli.options import UsageError
from deepvrm.cli.tables import markdown_table, text_table
from deepvrm.inference.batches import batches, run_or_split
from deepvrm.inference.errors import one_line

from ._common import NO_MATPLOTLIB, AnalysisModel, concat, datasets_and_model, fmt, prepare, pyplot, write_json

from . import REPRESENTATIONS
LAYER_CONVENTION = (
    "layer i = hidden state after i decoder layers (0: input embeddings; i: output of decoder layer i-1 = "
    "input of decoder layer i; N: final normed output)"
)
SUGGESTION_RULE = (
    "the smallest layer i in 1..N-1 whose {rep} probe accuracy on {dataset} is within tol of every deeper "
    "layer's (the curve has stopped rising), tol = max({tolerance}, one standard error of the folds at the best "
    "layer) = {tol:.3f}; injecting at i keeps layers 0..i-1, which build the semantics, untouched"
)


# ----------------------------------------------------------------------------------------- features
class FeatureStore:
    """Pooled hidden states on disk: a float32 memory map [depth, representation, image, hidden]."""

    def __init__(self, path: Path, num_states: int, num_images: int, hidden: int):
        self.path = path
        self.array = np.lib.format.open_memmap(
            path, mode="w+", dtype=np.float32, shape=(num_states, len(REPRESENTATIONS), num_images, hidden)
        )

    def write(self, rows: list[int], state: int, image: np.ndarray, last: np.ndarray) -> None:
        self.array[state, 0, rows] = image
        self.array[state, 1, rows] = last

    def read(self, state: int, representation: int, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.array[state, representation][rows], dtype=np.float32)

    def close(self) -> None:
        self.array.flush()
        del self.array


@torch.no_grad()
def pooled_hidden_states(am: AnalysisModel, pixel_values: torch.Tensor, grid: torch.Tensor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per depth 0..N: (mean over image tokens [B, H], last prompt token [B, H]), float32."""
    outputs, input_ids = am.forward(grid, pixel_values, output_hidden_states=True)
    hidden_states = outputs.hidden_states
    if hidden_states is None or len(hidden_states) != am.num_layers + 1:
        raise RuntimeError(f"expected {am.num_layers + 1} hidden states, got {0 if hidden_states is None else len(hidden_states)}")
    mask = (input_ids == am.image_token_id).unsqueeze(-1).float()
    counts = mask.sum(1).clamp(min=1)
    pooled = []
    for h in hidden_states:
        h = h.float()
        pooled.append((((h * mask).sum(1) / counts).cpu().numpy(), h[:, -1].cpu().numpy()))
    return pooled


def extract_features(am: AnalysisModel, samples: list, store: FeatureStore, batch_size: int, log=print):
    """Fill `store` for every readable image; returns (ok mask, [error lines])."""
    ok = np.zeros(len(samples), dtype=bool)
    errors: list[str] = []
    done = 0
    for chunk in batches(list(enumerate(samples)), batch_size):
        prepared = [prepare(am, index, sample.image) for index, sample in chunk]
        errors += [p.error for p in prepared if p.error is not None]
        good = [p for p in prepared if p.error is None]
        for group, pooled, error in run_or_split(good, lambda group: pooled_hidden_states(am, *concat(group))):
            if error is not None:
                errors.append(f"{samples[group[0].index].image}: model failed on it ({one_line(error)})")
                continue
            rows = [p.index for p in group]
            for state, (image, last) in enumerate(pooled):
                store.write(rows, state, image, last)
            ok[rows] = True
        done += len(chunk)
        if log is not None and (done % (batch_size * 10) < batch_size or done == len(samples)):
            log(f"  {done}/{len(samples)} images read")
    return ok, errors


# ----------------------------------------------------------------------------------------- probes
def cross_validated_probe(X: np.ndarray, y: np.ndarray, splits, C: float = 1.0) -> dict:
    """Accuracy and ROC-AUC of a logistic-regression probe on each fold."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accuracy, auc = [], []
    for train, test in splits:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="liblinear", max_iter=1000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            probe.fit(X[train], y[train])
        scores = probe.predict_proba(X[test])[:, 1]
        accuracy.append(float(np.mean((scores >= 0.5) == y[test])))
        auc.append(float(roc_auc_score(y[test], scores)))
    return {
        "accuracy": float(np.mean(accuracy)),
        "accuracy_std": float(np.std(accuracy)),
        "roc_auc": float(np.mean(auc)),
        "roc_auc_std": float(np.std(auc)),
        "accuracy_folds": accuracy,
        "roc_auc_folds": auc,
    }


def fold_splits(y: np.ndarray, folds: int, seed: int):
    from sklearn.model_selection import StratifiedKFold

    smallest = int(min(np.sum(y == 0), np.sum(y == 1)))
    if smallest < 2:
        raise ValueError(f"need at least 2 readable images of each class, got {int(np.sum(y == 0))} real and {int(np.sum(y == 1))} fake")
    k = min(folds, smallest)
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def stage_of(layer: int, injection_layer: int | None) -> str:
    if injection_layer is None:
        return ""
    return "before injection" if layer <= injection_layer else "after injection"


def suggest_injection_layer(accuracy: list[float], accuracy_std: list[float], folds: int, tolerance: float = 0.01) -> tuple[int, float]:
    """(suggested layer, tolerance used) for a curve indexed by depth 0..N (see the module docstring)."""
    accuracy = np.asarray(accuracy, dtype=float)
    num_layers = len(accuracy) - 1
    if num_layers < 2:
        raise ValueError("need a model with at least 2 decoder layers to suggest an injection layer")
    best = int(np.argmax(accuracy))
    tol = max(tolerance, float(accuracy_std[best]) / np.sqrt(max(folds, 1)))
    for layer in range(1, num_layers):
        if accuracy[layer:].max() - accuracy[layer] <= tol:
            return layer, tol
    return num_layers - 1, tol


def probe_dataset(am: AnalysisModel, dataset, work_dir: Path, args, log=print) -> dict:
    samples = dataset.samples
    result = {
        "name": dataset.name,
        "path": dataset.path,
        "n_listed": dataset.total,
        "skipped_unlabelled": dataset.skipped_unlabelled,
    }
    if not samples:
        result["error"] = "no labelled images"
        return result
    log(f"{dataset.name}: reading {len(samples)} images ...")
    hidden = am.config.text_config.hidden_size
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset.name)
    store = FeatureStore(work_dir / f"{safe}.features.npy", am.num_layers + 1, len(samples), hidden)
    try:
        ok, errors = extract_features(am, samples, store, args.batch_size, log=log)
        y_all = np.array([s.label for s in samples], dtype=int)
        rows = np.flatnonzero(ok)
        y = y_all[rows]
        result.update(
            n_images=int(len(rows)),
            n_real=int(np.sum(y == 0)),
            n_fake=int(np.sum(y == 1)),
            errors=errors,
        )
        try:
            splits = fold_splits(y, args.folds, args.seed)
        except ValueError as error:
            result["error"] = str(error)
            return result
        result["folds"] = len(splits)
        result["chance"] = float(max(np.mean(y == 0), np.mean(y == 1)))
        layers = []
        for state in range(am.num_layers + 1):
            entry = {"layer": state, "stage": stage_of(state, am.injection_layer)}
            for index, representation in enumerate(REPRESENTATIONS):
                entry[representation] = cross_validated_probe(store.read(state, index, rows), y, splits, C=args.C)
            layers.append(entry)
        result["layers"] = layers
    finally:
        store.close()
    return result


def run_probe(am: AnalysisModel, datasets: list, args, work_dir: Path, log=print) -> dict:
    report = {
        "model": am.source,
        "model_kind": am.kind,
        "num_layers": am.num_layers,
        "injection_layer": am.injection_layer,
        "layer_convention": LAYER_CONVENTION,
        "representations": REPRESENTATIONS,
        "probe": f"StandardScaler + L2 LogisticRegression(C={args.C}, liblinear), stratified {args.folds}-fold CV (seed {args.seed})",
        "datasets": [probe_dataset(am, dataset, work_dir, args, log=log) for dataset in datasets],
    }
    probed = [d for d in report["datasets"] if "layers" in d]
    semantic = next((d for d in probed if d["name"] == args.semantic), None) if args.semantic else (probed[0] if probed else None)
    if args.semantic and semantic is None:
        report["suggestion_error"] = f"no probed dataset named {args.semantic!r}"
    if semantic is not None and am.num_layers >= 2:
        curve = [layer[args.suggest_from]["accuracy"] for layer in semantic["layers"]]
        spread = [layer[args.suggest_from]["accuracy_std"] for layer in semantic["layers"]]
        layer, tol = suggest_injection_layer(curve, spread, semantic["folds"], args.tolerance)
        suggestion = {
            "layer": layer,
            "dataset": semantic["name"],
            "representation": args.suggest_from,
            "tolerance": tol,
            "rule": SUGGESTION_RULE.format(
                rep=REPRESENTATIONS[args.suggest_from], dataset=semantic["name"], tolerance=args.tolerance, tol=tol
            ),
        }
        if max(curve) - semantic["chance"] < 0.05:
            suggestion["warning"] = "the probe finds no real-vs-fake signal at any depth: the suggestion means nothing"
        report["suggested_injection_layer"] = suggestion
    return report


# ----------------------------------------------------------------------------------------- reports
def _table(dataset: dict) -> tuple[list[str], list[list]]:
    headers = ["layer"]
    with_stage = any(layer["stage"] for layer in dataset["layers"])
    if with_stage:
        headers.append("stage")
    headers += ["image acc", "image AUC", "last-token acc", "last-token AUC"]
    rows = []
    for layer in dataset["layers"]:
        row = [layer["layer"]] + ([layer["stage"]] if with_stage else [])
        for representation in REPRESENTATIONS:
            probe = layer[representation]
            row += [fmt(probe["accuracy"], probe["accuracy_std"]), fmt(probe["roc_auc"], probe["roc_auc_std"])]
        rows.append(row)
    return headers, rows


def _dataset_heading(dataset: dict) -> str:
    if "layers" not in dataset and "n_images" not in dataset:
        return f"{dataset['name']} ({dataset['path']})"
    text = f"{dataset['name']} ({dataset['path']}): {dataset.get('n_images', 0)} images ({dataset.get('n_real', 0)} real, {dataset.get('n_fake', 0)} fake)"
    if dataset.get("folds"):
        text += f", {dataset['folds']}-fold CV, chance {dataset['chance']:.3f}"
    return text


def _notes(dataset: dict) -> list[str]:
    notes = []
    if dataset.get("skipped_unlabelled"):
        notes.append(f"{dataset['skipped_unlabelled']} unlabelled images skipped")
    if dataset.get("errors"):
        notes.append(f"{len(dataset['errors'])} images could not be read: " + "; ".join(dataset["errors"][:5]) + (" ..." if len(dataset["errors"]) > 5 else ""))
    if dataset.get("error"):
        notes.append(f"not probed: {dataset['error']}")
    return notes


def _suggestion_lines(report: dict) -> list[str]:
    suggestion = report.get("suggested_injection_layer")
    if suggestion is None:
        return [report["suggestion_error"]] if report.get("suggestion_error") else []
    lines = [f"Suggested injection layer: {suggestion['layer']} of {report['num_layers']}", f"  rule: {suggestion['rule']}"]
    if report["injection_layer"] is not None:
        lines.append(f"  (this model injects at layer {report['injection_layer']})")
    if suggestion.get("warning"):
        lines.append(f"  warning: {suggestion['warning']}")
    return lines


def render_text(report: dict) -> str:
    out = [f"Layer-wise probe of {report['model']} ({report['model_kind']}, {report['num_layers']} decoder layers"
           + (f", injection at layer {report['injection_layer']})" if report["injection_layer"] is not None else ")"),
           f"  {report['layer_convention']}", f"  probe: {report['probe']}", ""]
    for dataset in report["datasets"]:
        out.append(_dataset_heading(dataset))
        if "layers" in dataset:
            out.append(text_table(*_table(dataset)))
        out += [f"  note: {note}" for note in _notes(dataset)]
        out.append("")
    out += _suggestion_lines(report)
    return "\n".join(out).rstrip() + "\n"


def render_markdown(report: dict) -> str:
    out = [f"# Layer-wise probe: `{report['model']}`", "",
           f"{report['model_kind']}, {report['num_layers']} decoder layers"
           + (f", residual injection at layer {report['injection_layer']}." if report["injection_layer"] is not None else "."),
           f"Probe: {report['probe']}. Depth convention: {report['layer_convention']}.", ""]
    for dataset in report["datasets"]:
        out += [f"## {_dataset_heading(dataset)}", ""]
        if "layers" in dataset:
            out += [markdown_table(*_table(dataset)), ""]
        out += [f"- {note}" for note in _notes(dataset)]
        if _notes(dataset):
            out.append("")
    lines = _suggestion_lines(report)
    if lines:
        out += ["## Suggested injection layer", "", f"**{lines[0]}**", ""] + [f"- {line.strip()}" for line in lines[1:]]
    return "\n".join(out).rstrip() + "\n"


def plot(report: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for number, dataset in enumerate(d for d in report["datasets"] if "layers" in d):
        color = colors[number % len(colors)]
        x = [layer["layer"] for layer in dataset["layers"]]
        for representation, style in (("image", "-"), ("last", "--")):
            mean = np.array([layer[representation]["accuracy"] for layer in dataset["layers"]])
            std = np.array([layer[representation]["accuracy_std"] for layer in dataset["layers"]])
            ax.plot(x, mean, style, marker="o", markersize=3, color=color, label=f"{dataset['name']}: {REPRESENTATIONS[representation]}")
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12 if style == "-" else 0.06)
    k = report["injection_layer"]
    if k is not None:
        ax.axvspan(k, k + 1, color="grey", alpha=0.15, label=f"residual injection (input of layer {k})")
    suggestion = report.get("suggested_injection_layer")
    if suggestion is not None:
        ax.axvline(suggestion["layer"], color="black", linestyle=":", label=f"suggested injection layer {suggestion['layer']}")
    ax.axhline(0.5, color="grey", linewidth=0.8)
    ax.set_xlabel("layer (hidden state after i decoder layers)")
    ax.set_ylabel("probe accuracy (cross-validated)")
    ax.set_ylim(0.35, 1.02)
    ax.set_title(f"Real vs fake, linear probes per layer: {Path(report['model']).name}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def run(args) -> int:
    """`deepvrm probe` with parsed arguments (`deepvrm.cli.probe.build_parser`)."""
    if args.folds < 2:
        print("deepvrm probe: --folds must be at least 2", file=sys.stderr)
        return 2
    if args.max_images is not None and args.max_images < 4:
        print("deepvrm probe: --max-images must be at least 4 (2 per class)", file=sys.stderr)
        return 2
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731  (progress on stderr, tables on stdout)
    try:
        datasets, am = datasets_and_model(args, need_labels=True, pixels=args.pixels)
    except UsageError as error:
        print(f"deepvrm probe: {error}", file=sys.stderr)
        return 2
    log(f"Loaded {args.model} ({am.kind}, {am.num_layers} decoder layers) on {am.device} in {am.dtype}")
    if args.features_dir:
        work_dir = Path(args.features_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.mkdtemp(prefix="deepvrm-probe-")
        work_dir = Path(cleanup)
    try:
        report = run_probe(am, datasets, args, work_dir, log=log)
    finally:
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
    print(render_text(report), end="")
    if args.report:
        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "probe.json", report)
        (folder / "probe.md").write_text(render_markdown(report))
        drawn = plot(report, folder / "probe.png")
        print(f"\nWrote {folder / 'probe.json'}, {folder / 'probe.md'}" + (f" and {folder / 'probe.png'}" if drawn else ""))
        if not drawn:
            print(NO_MATPLOTLIB)
    return 0 if any("layers" in d for d in report["datasets"]) else 1


def main(argv: list[str] | None = None) -> int:
    """`deepvrm probe` (its options are in deepvrm.cli.probe)."""
    from deepvrm.cli.probe import main as command

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
