"""`deepvrm attribute`: how much of each decision comes from the artifact path and the semantic path.

    deepvrm attribute --model DIR --data DATA [DATA ...] [--report DIR] [--token-maps N]

For every image, P(fake) three ways (one pass of both vision towers, three decoder passes):

- full:           the model as it is;
- no residual:    the residual path removed: the low-level embeddings injected at layer K are
                  replaced by the semantic ones (the image's own semantic embeddings), so the
                  low-level tower adds nothing the semantic tower does not already say;
- residual only:  only the residual path: the semantic image embeddings at the input are replaced by
                  the low-level ones, so every image-dependent signal comes from the low-level tower.

With z = logit P(fake) (the fake-minus-real answer logit):

    artifact evidence  A = z_full - z_no_residual     (fake log-odds the artifact path adds)
    semantic evidence  S = z_full - z_residual_only   (fake log-odds the semantic path adds)
    artifact share       = |A| / (|A| + |S|)          (n/a when both are below 1e-4: the paths agree)

and `decided_by`: which path alone reaches the full model's decision (at P(fake) = 0.5):
`artifact` (only the residual-only model does), `semantic` (only the no-residual model does),
`either` (both do), `combined` (neither: it takes both). For fakes the model catches, this is
the generator's "caught by". A freshly built Deep-VRM (low-level tower = copy of `visual`) gives
A = S = 0 for every image: its two paths are the same.

Summaries per dataset and per generator (the subset folder, e.g. GenImage's `sdv4/val`) go to
stdout, attribution.json, attribution.md and attribution.png; per-image rows to
attribution_images.jsonl. `--token-maps N` also renders, for the first N fakes, the change in the
fake log-odds when each image token's residual alone is removed (its low-level embedding replaced
by its semantic one), as a heat map over the image: where the artifact evidence sits.
"""

from __future__ import annotations

import json
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from deepvrm.cli.options import UsageError
from deepvrm.cli.tables import markdown_table, text_table
from deepvrm.inference.batches import batches, run_or_split
from deepvrm.inference.errors import one_line

from ._common import (
    NO_MATPLOTLIB, AnalysisModel, concat, datasets_and_model, fmt, json_ready, prepare, pyplot, write_json,
)  # fmt: skip

MODES = ("full", "no_residual", "residual_only")
MODE_TITLES = {"full": "full", "no_residual": "no residual", "residual_only": "residual only"}
PATHS = ("artifact", "semantic", "either", "combined")
AGREE_EPS = 1e-4
DEFINITIONS = {
    "p_full": "P(fake) of the model",
    "p_no_residual": "P(fake) with the residual path removed (low-level embeddings replaced by the semantic ones)",
    "p_residual_only": "P(fake) with only the residual path (semantic image embeddings replaced by the low-level ones)",
    "artifact_evidence": "logit P_full - logit P_no_residual: fake log-odds the artifact path adds",
    "semantic_evidence": "logit P_full - logit P_residual_only: fake log-odds the semantic path adds",
    "artifact_share": f"|artifact| / (|artifact| + |semantic|); null when both < {AGREE_EPS}",
    "decided_by": "which path alone reaches the full model's decision: artifact, semantic, either, combined",
    "token_map": "per image token: logit P_full - logit P with that token's residual removed (> 0: the token's artifact evidence points to fake)",
}


# ----------------------------------------------------------------------------------------- passes
def _fake_logodds(am: AnalysisModel, grid: torch.Tensor, semantic: list[torch.Tensor], low_level: list[torch.Tensor],
                  template, repeat: int = 1) -> torch.Tensor:
    """z = logit P(fake) with the given per-image semantic (input) and low-level (injected) embeddings.

    `template`: the model's own image features (their class; and what else the backbone feeds the
    decoder, e.g. Qwen3-VL's DeepStack features of the semantic tower, kept as they are, repeated
    `repeat` times when the batch repeats one image)."""
    fields = {"pooler_output": tuple(semantic), "low_level_pooler_output": tuple(low_level)}
    if getattr(template, "deepstack_features", None) is not None:
        fields["deepstack_features"] = [tuple(layer) * repeat for layer in template.deepstack_features]
    features = type(template)(**fields)
    outputs, _ = am.forward(grid, mm_encoder_outputs={"image": features})
    return am.fake_logodds(outputs.last_hidden_state[:, -1])


@torch.no_grad()
def three_way_logodds(am: AnalysisModel, pixel_values: torch.Tensor, grid: torch.Tensor) -> dict[str, np.ndarray]:
    """{"full", "no_residual", "residual_only"}: z = logit P(fake) per image."""
    grid = grid.to(am.device)
    features = am.model.get_image_features(pixel_values.to(am.device, am.dtype), grid)
    semantic, low_level = list(features.pooler_output), list(features.low_level_pooler_output)
    return {
        "full": _fake_logodds(am, grid, semantic, low_level, features).cpu().numpy(),
        "no_residual": _fake_logodds(am, grid, semantic, semantic, features).cpu().numpy(),
        "residual_only": _fake_logodds(am, grid, low_level, low_level, features).cpu().numpy(),
    }


@torch.no_grad()
def token_map(am: AnalysisModel, pixel_values: torch.Tensor, grid: torch.Tensor, batch_size: int = 8) -> tuple[np.ndarray, float]:
    """(map [rows, cols], z_full) for one image: z_full - z with one token's residual removed.

    Image tokens are the merged patches in raster order, so token t sits at (t // cols, t % cols)."""
    grid = grid.to(am.device)
    features = am.model.get_image_features(pixel_values.to(am.device, am.dtype), grid)
    semantic, low_level = features.pooler_output[0], features.low_level_pooler_output[0]
    z_full = float(_fake_logodds(am, grid, [semantic], [low_level], features)[0])
    deltas = []
    for chunk in batches(list(range(semantic.shape[0])), batch_size):
        ablated = []
        for token in chunk:
            embeds = low_level.clone()
            embeds[token] = semantic[token]
            ablated.append(embeds)
        z = _fake_logodds(am, grid.repeat(len(chunk), 1), [semantic] * len(chunk), ablated, features, repeat=len(chunk))
        deltas.append(z_full - z.float().cpu().numpy())
    merge = am.config.vision_config.spatial_merge_size
    _, height, width = grid[0].tolist()
    return np.concatenate(deltas).reshape(height // merge, width // merge), z_full


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def attribution_row(z: dict[str, float], threshold: float = 0.5) -> dict:
    """Per-image attribution from the three log-odds (see the module docstring)."""
    artifact = float(z["full"] - z["no_residual"])
    semantic = float(z["full"] - z["residual_only"])
    total = abs(artifact) + abs(semantic)
    decision = _sigmoid(z["full"]) >= threshold
    no_residual_agrees = (_sigmoid(z["no_residual"]) >= threshold) == decision
    residual_only_agrees = (_sigmoid(z["residual_only"]) >= threshold) == decision
    decided_by = {
        (True, True): "either",
        (False, True): "artifact",
        (True, False): "semantic",
        (False, False): "combined",
    }[(bool(no_residual_agrees), bool(residual_only_agrees))]
    row = {f"p_{mode}": float(_sigmoid(z[mode])) for mode in MODES}
    row.update(
        logodds_full=float(z["full"]),
        artifact_evidence=artifact,
        semantic_evidence=semantic,
        artifact_share=(abs(artifact) / total) if total >= AGREE_EPS else None,
        prediction="fake" if decision else "real",
        decided_by=decided_by,
    )
    return row


def attribute_images(am: AnalysisModel, datasets: list, batch_size: int, threshold: float = 0.5, log=print) -> list[dict]:
    """One row per image (in dataset order): the attribution, or an error."""
    rows = []
    for dataset in datasets:
        log(f"{dataset.name}: attributing {len(dataset.samples)} images ...")
        for chunk in batches(dataset.samples, batch_size):
            prepared = [prepare(am, index, sample.image) for index, sample in enumerate(chunk)]
            outcomes: list = [p.error for p in prepared]
            good = [p for p in prepared if p.error is None]
            for group, z, error in run_or_split(good, lambda group: three_way_logodds(am, *concat(group))):
                if error is not None:
                    outcomes[group[0].index] = f"{chunk[group[0].index].image}: model failed on it ({one_line(error)})"
                    continue
                for position, p in enumerate(group):
                    outcomes[p.index] = attribution_row({mode: z[mode][position] for mode in MODES}, threshold)
            for sample, outcome in zip(chunk, outcomes):
                row = {"path": sample.image, "dataset": dataset.name, "generator": sample.subset, "label": sample.label}
                row.update(outcome if isinstance(outcome, dict) else {"error": outcome})
                rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------- summaries
def _mean(values) -> float:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _class_summary(rows: list[dict]) -> dict:
    summary = {"n": len(rows)}
    for mode in MODES:
        summary[f"p_{mode}"] = _mean(r[f"p_{mode}"] for r in rows)
    for key in ("artifact_evidence", "semantic_evidence", "artifact_share"):
        summary[key] = _mean(r[key] for r in rows)
    return summary


def relies_on(share: float) -> str:
    if not np.isfinite(share):
        return "neither (paths agree)"
    if share > 0.6:
        return "artifacts"
    if share < 0.4:
        return "semantics"
    return "both"


def summarize(rows: list[dict], threshold: float = 0.5) -> dict:
    """Per-dataset and per-generator summaries (see `DEFINITIONS`)."""
    groups: OrderedDict[tuple[str, str], list[dict]] = OrderedDict()
    for row in rows:
        groups.setdefault(("dataset", row["dataset"]), []).append(row)
    for row in rows:
        if row.get("generator"):
            groups.setdefault(("generator", f"{row['dataset']}/{row['generator']}"), []).append(row)
    out = []
    for (kind, name), members in groups.items():
        good = [r for r in members if "error" not in r]
        labelled = [r for r in good if r["label"] is not None]
        fakes = [r for r in labelled if r["label"] == 1]
        reals = [r for r in labelled if r["label"] == 0]
        summary = {
            "group": name,
            "kind": kind,
            "n": len(good),
            "n_real": len(reals),
            "n_fake": len(fakes),
            "n_unlabelled": len(good) - len(labelled),
            "n_errors": len(members) - len(good),
            "accuracy": {
                mode: (float(np.mean([(r[f"p_{mode}"] >= threshold) == (r["label"] == 1) for r in labelled])) if labelled else float("nan"))
                for mode in MODES
            },
            "fake": _class_summary(fakes),
            "real": _class_summary(reals),
            "all": _class_summary(good),
        }
        caught = [r for r in fakes if r["prediction"] == "fake"]
        summary["fake"]["caught"] = len(caught)
        summary["fake"]["caught_by"] = {path: (sum(r["decided_by"] == path for r in caught) / len(caught)) if caught else float("nan") for path in PATHS}
        reference = summary["fake"] if fakes else summary["all"]
        summary["relies_on"] = relies_on(reference["artifact_share"])
        out.append(summary)
    return {"groups": out}


def _summary_tables(summary: dict) -> tuple[tuple[list[str], list[list]], tuple[list[str], list[list]]]:
    headers = ["group", "images (real/fake)", "acc full", "acc no residual", "acc residual only",
               "artifact share: fakes", "artifact share: reals", "fakes rely on"]
    rows = []
    for g in summary["groups"]:
        label = g["group"] if g["kind"] == "dataset" else f"  {g['group']}"
        rows.append([
            label, f"{g['n']} ({g['n_real']}/{g['n_fake']})",
            *(fmt(g["accuracy"][mode]) for mode in MODES),
            fmt(g["fake"]["artifact_share"]), fmt(g["real"]["artifact_share"]), g["relies_on"],
        ])
    caught_headers = ["group", "fakes", "caught", "P(fake) full / no res. / res. only",
                      "by artifacts", "by semantics", "by either", "only combined"]
    caught_rows = []
    for g in summary["groups"]:
        if not g["n_fake"]:
            continue
        fake = g["fake"]
        label = g["group"] if g["kind"] == "dataset" else f"  {g['group']}"
        caught_rows.append([
            label, g["n_fake"], fake["caught"], " / ".join(fmt(fake[f"p_{mode}"]) for mode in MODES),
            *(fmt(fake["caught_by"][path], digits=2) for path in PATHS),
        ])
    return (headers, rows), (caught_headers, caught_rows)


def render_text(report: dict) -> str:
    (h1, r1), (h2, r2) = _summary_tables(report["summary"])
    out = [f"Attribution of {report['model']} (injection at layer {report['injection_layer']}, {report['fusion']} fusion)", ""]
    out += ["Accuracy three ways and the artifact path's share of each decision:", text_table(h1, r1), ""]
    if r2:
        out += ["Fakes the full model catches, and which path alone catches them:", text_table(h2, r2), ""]
    errors = [r for r in report["images"] if "error" in r]
    if errors:
        out.append(f"{len(errors)} images could not be scored: " + "; ".join(r["error"] for r in errors[:5]) + (" ..." if len(errors) > 5 else ""))
    return "\n".join(out).rstrip() + "\n"


def render_markdown(report: dict) -> str:
    (h1, r1), (h2, r2) = _summary_tables(report["summary"])
    out = [f"# Attribution: `{report['model']}`", "",
           f"Residual injection at layer {report['injection_layer']}, {report['fusion']} fusion. "
           f"P(fake) is computed three ways: the full model, the residual path removed (the low-level embeddings replaced "
           f"by the semantic ones), only the residual path (the semantic image embeddings replaced by the low-level ones).", "",
           markdown_table(h1, r1), ""]
    if r2:
        out += ["Fakes the full model catches, and which path alone catches them (fractions of the caught fakes):", "",
                markdown_table(h2, r2), ""]
    out += ["Definitions:", ""] + [f"- `{k}`: {v}" for k, v in DEFINITIONS.items()]
    errors = [r for r in report["images"] if "error" in r]
    if errors:
        out += ["", f"{len(errors)} images could not be scored:", ""] + [f"- {r['error']}" for r in errors]
    return "\n".join(out).rstrip() + "\n"


def plot(report: dict, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    groups = report["summary"]["groups"]
    names = [g["group"] for g in groups]
    x = np.arange(len(groups))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(groups) + 4), 4.2))
    width = 0.26
    for offset, mode in zip((-width, 0, width), MODES):
        left.bar(x + offset, [g["accuracy"][mode] for g in groups], width, label=MODE_TITLES[mode])
    left.set_ylim(0, 1.05)
    left.axhline(0.5, color="grey", linewidth=0.8)
    left.set_ylabel("accuracy")
    left.set_title("Accuracy: full / residual removed / residual only")
    left.legend(fontsize=7)
    bottom = np.zeros(len(groups))
    colors = {"artifact": "tab:red", "semantic": "tab:blue", "either": "tab:purple", "combined": "tab:grey"}
    for name in PATHS:
        values = np.nan_to_num(np.array([g["fake"]["caught_by"][name] for g in groups], dtype=float))
        right.bar(x, values, 0.6, bottom=bottom, color=colors[name], label=f"caught by {name}")
        bottom += values
    right.plot(x, [g["fake"]["artifact_share"] for g in groups], "kD", label="mean artifact share (fakes)")
    right.set_ylim(0, 1.05)
    right.set_title("Caught fakes: which path alone suffices")
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.set_xticks(x)
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_token_map(image, values: np.ndarray, grid: torch.Tensor, patch_size: int, title: str, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    _, height, width = grid[0].tolist()
    shown = image.resize((width * patch_size, height * patch_size))  # the picture the model saw
    limit = float(np.abs(values).max()) or 1.0
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 4))
    left.imshow(shown)
    left.set_title("image (as the model sees it)", fontsize=9)
    right.imshow(shown)
    heat = right.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6,
                        extent=(-0.5, shown.width - 0.5, shown.height - 0.5, -0.5), interpolation="nearest")
    right.set_title("fake log-odds lost when the token's residual is removed", fontsize=9)
    fig.colorbar(heat, ax=right, fraction=0.046, pad=0.04)
    for axis in (left, right):
        axis.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def render_token_maps(am: AnalysisModel, rows: list[dict], count: int, folder: Path, batch_size: int, log=print) -> list[dict]:
    """Token maps of the first `count` scored fakes (or images, when none is labelled fake)."""
    scored = [r for r in rows if "error" not in r]
    chosen = [r for r in scored if r["label"] == 1][:count] or scored[:count]
    folder.mkdir(parents=True, exist_ok=True)
    maps = []
    for number, row in enumerate(chosen):
        prepared = prepare(am, 0, row["path"], keep_image=True)
        if prepared.error:
            continue
        values, z_full = token_map(am, prepared.pixel_values, prepared.grid, batch_size)
        name = f"{number:03d}-{Path(row['path']).stem}.png"
        title = (f"{Path(row['path']).name}: P(fake) {row['p_full']:.3f} full, {row['p_no_residual']:.3f} no residual, "
                 f"{row['p_residual_only']:.3f} residual only")
        drawn = plot_token_map(prepared.image, values, prepared.grid, am.config.vision_config.patch_size, title, folder / name)
        maps.append({"path": row["path"], "png": str(folder / name) if drawn else None, "logodds_full": z_full,
                     "grid": list(values.shape), "values": values.tolist()})
        log(f"  token map {number + 1}/{len(chosen)}: {Path(row['path']).name}")
    return maps


def run(args) -> int:
    """`deepvrm attribute` with parsed arguments (`deepvrm.cli.attribute.build_parser`)."""
    if args.token_maps and not args.report:
        print("deepvrm attribute: --token-maps needs --report (the maps are PNG files)", file=sys.stderr)
        return 2
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    try:
        datasets, am = datasets_and_model(args, need_labels=False, require_deepvrm=True)
    except UsageError as error:
        print(f"deepvrm attribute: {error}", file=sys.stderr)
        return 2
    log(f"Loaded {args.model} on {am.device} in {am.dtype}")
    rows = attribute_images(am, datasets, args.batch_size, args.threshold, log=log)
    report = {
        "model": am.source,
        "injection_layer": am.injection_layer,
        "fusion": am.config.fusion,
        "threshold": args.threshold,
        "definitions": DEFINITIONS,
        "summary": summarize(rows, args.threshold),
        "images": rows,
    }
    print(render_text(report), end="")
    if args.report:
        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        if args.token_maps:
            maps = render_token_maps(am, rows, args.token_maps, folder / "token_maps", args.batch_size, log=log)
            write_json(folder / "token_maps.json", {"definition": DEFINITIONS["token_map"], "maps": maps})
        write_json(folder / "attribution.json", {k: v for k, v in report.items() if k != "images"})
        with open(folder / "attribution_images.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(json_ready(row)) + "\n")
        (folder / "attribution.md").write_text(render_markdown(report))
        drawn = plot(report, folder / "attribution.png")
        print(f"\nWrote {folder}/attribution.json, attribution.md, attribution_images.jsonl"
              + (", attribution.png" if drawn else "") + (", token_maps/" if args.token_maps else ""))
        if not drawn:
            print(NO_MATPLOTLIB)
    return 0 if any("error" not in r for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    """`deepvrm attribute` (its options are in deepvrm.cli.attribute)."""
    from deepvrm.cli.attribute import main as command

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
