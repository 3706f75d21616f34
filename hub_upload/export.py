"""What `deepvrm push` uploads, written to a folder (`--dry-run OUT_DIR`, or a temporary one to upload).

A full export: the safetensors weights (copied byte for byte; re-sharded when a file holds more than
`max_shard_size`), `config.json` (completed for folders in the official layout, whose config says
`qwen2_5_vl`), `generation_config.json`, the processor, the model code and the card (README.md).
An adapter-only export (a stage-2 run saved with `--save-adapter-only`): the LoRA adapter naming its
base by Hub id, the public training record, the config and processor when the run has them, the
model code and a card that names the base model.

The model code comes from transformers' custom-code saving (`save_pretrained` of the config and the
processor, `custom_object_save` of the model class, as a model's `save_pretrained` does): verbatim
copies of the package's `modeling_deepvrm/` files. The model folder is only read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deepvrm.inference.sources import is_hub_id
from deepvrm.trainers.models import TRAINING_INFO

METRICS_FILES = ("metrics.json", "eval_metrics.json")  # `deepvrm evaluate` results beside the model
# Bytes per element of each safetensors dtype, to size tensors from the headers alone.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


class ExportError(ValueError):
    """The model folder cannot be exported as asked (the message says why and what to do)."""


@dataclass
class Export:
    """An export written to `folder`, and every fact its card states (each from the model's records)."""

    kind: str  # "full" or "adapter"
    folder: Path
    model_dir: Path
    repo_id: str | None = None
    config: object | None = None
    training: dict = field(default_factory=dict)  # deepvrm_training.json
    license: str | None = None
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    base_model: str | None = None
    base_kind: str = "qwen2_5_vl"  # an adapter's base: a Deep-VRM, or a Qwen2.5-VL to build one from
    adapter_config: dict | None = None
    parameters: int = 0
    dtypes: list[str] = field(default_factory=list)
    has_processor: bool = False
    metrics: dict | None = None
    metrics_source: str | None = None
    trainer_state: dict | None = None

    @property
    def files(self) -> dict[str, int]:
        """Path in the repository -> size in bytes (a linked weight file counts its target)."""
        return {p.relative_to(self.folder).as_posix(): p.stat().st_size for p in sorted(self.folder.rglob("*")) if p.is_file()}

    def describe(self) -> str:
        files = self.files
        lines = [f"{self.kind} export of {self.model_dir}: {len(files)} files, {human_size(sum(files.values()))}"]
        return "\n".join(lines + [f"  {name:<40} {human_size(size):>10}" for name, size in files.items()])


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def model_code_files() -> list[Path]:
    """The package's files that transformers' custom-code saving copies beside a model."""
    from transformers.dynamic_module_utils import get_relative_import_files

    import deepvrm.modeling_deepvrm as modeling

    return [Path(modeling.__file__), *map(Path, get_relative_import_files(modeling.__file__))]


def _read_json(path: Path, strict: bool = True):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        if strict:
            raise ExportError(f"Cannot read {path}: {error}") from error
        return None


# ---------------------------------------------------------------------------------------------- weights
def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set((_read_json(index).get("weight_map") or {}).values()))
        if missing := [name for name in names if not (model_dir / name).exists()]:
            raise ExportError(f"{index} names shards that are not there: {missing}.")
        return [model_dir / name for name in names]
    if (model_dir / "model.safetensors").exists():
        return [model_dir / "model.safetensors"]
    if list(model_dir.glob("*.bin")):
        raise ExportError(f"{model_dir} holds PyTorch pickle weights; Deep-VRM exports safetensors only. "
                          "Load the model and save it again with save_pretrained() (safetensors is the default).")  # fmt: skip
    if (model_dir / "adapter_config.json").exists():
        raise ExportError(f"{model_dir} holds a LoRA adapter, not full weights: push it with --adapter-only, or merge "
                          "it into its base first (deepvrm.trainers.models.load_adapter_folder(path).save_pretrained(out)).")  # fmt: skip
    raise ExportError(f"{model_dir} has no model weights (model.safetensors or model.safetensors.index.json).")


def read_headers(files: list[Path]) -> dict[str, tuple[Path, str, list[int]]]:
    """Tensor name -> (file, dtype, shape), from the safetensors headers (no tensor is read)."""
    from safetensors import safe_open

    infos = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                infos.update({key: (path, handle.get_slice(key).get_dtype(), handle.get_slice(key).get_shape())
                              for key in handle.keys()})  # fmt: skip
        except Exception as error:  # safetensors refuses truncated or damaged files
            raise ExportError(f"{path} is not a readable safetensors file (truncated or damaged?): {error}") from error
    return infos


def check_weights(config, keys) -> None:
    """Refuse weights that lack parameters of the model (names as the loader renames them)."""
    import torch
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping
    from transformers.core_model_loading import apply_renamings

    from deepvrm import deepvrm_class

    model_class = deepvrm_class(config.backbone, "generation")
    with torch.device("meta"):
        expected = set(model_class(config).state_dict())
    renamings = get_checkpoint_conversion_mapping(model_class.__name__) or []
    present = {apply_renamings(key, renamings) for key in keys}
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if missing := sorted(k for k in expected - present - tied if not k.endswith("fusion.gate")):  # a new gate starts at 0
        shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
        hint = f" It has no low-level encoder: is it a plain {config.backbone} model? Build a Deep-VRM with from_base_model first."
        raise ExportError(f"The weights miss parameters of the model: {shown}.{hint if any('visual_low_level' in k for k in missing) else ''}")


def _write_weights(model_dir: Path, infos: dict, folder: Path, max_shard_size: int | str, link: bool) -> None:
    """Copy (or, for an upload, link) the weight files; re-shard them with huggingface_hub's split when one
    holds more than `max_shard_size` (sized from the headers, each shard then read and written alone)."""
    import torch
    from huggingface_hub import split_torch_state_dict_into_shards as split
    from safetensors import safe_open
    from safetensors.torch import save_file

    sizes = {k: torch.empty(DTYPE_BYTES[dtype] * _numel(shape), dtype=torch.uint8, device="meta")
             for k, (_, dtype, shape) in sorted(infos.items())}  # fmt: skip
    files = sorted({path for path, _, _ in infos.values()})
    try:
        too_big = any(split({k: v for k, v in sizes.items() if infos[k][0] == f}, max_shard_size=max_shard_size).is_sharded for f in files)
    except ValueError as error:
        raise ExportError(f"Cannot read the size {max_shard_size!r} (write e.g. 5GB or 500MB): {error}") from error
    if not too_big:
        for path in files + [p for p in [model_dir / "model.safetensors.index.json"] if p.exists()]:
            if link and path.suffix == ".safetensors":  # for an upload, a link reads like a copy
                with contextlib.suppress(OSError):
                    os.symlink(path.resolve(), folder / path.name)
            if not (folder / path.name).exists():
                shutil.copyfile(path, folder / path.name)
        return
    shards, handles = split(sizes, max_shard_size=max_shard_size), {}
    for name, keys in shards.filename_to_tensors.items():
        tensors = {k: handles.setdefault(infos[k][0], safe_open(str(infos[k][0]), framework="pt")).get_tensor(k) for k in keys}
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
    if shards.is_sharded:
        index = {"metadata": shards.metadata, "weight_map": dict(sorted(shards.tensor_to_filename.items()))}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------- processor, metrics
def _has_tokenizer(folder: Path) -> bool:
    return (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists()


def _processor(source: Path, config):
    """The Deep-VRM processor of `source`, or one built around its bare tokenizer (e.g. Qwen2.5-VL's)."""
    from deepvrm.trainers.models import load_processor

    if not _has_tokenizer(source):
        raise ExportError(f"{source} has no tokenizer, and the export must carry one (the pipeline and the chat "
                          "interface need it). Save the processor there (processor.save_pretrained(DIR)) or pass --processor DIR.")  # fmt: skip
    try:
        return load_processor(str(source), config)
    except Exception as error:
        raise ExportError(f"Cannot load the processor of {source} (save the DeepVRMProcessor there, or pass "
                          f"--processor DIR): {error}") from error  # fmt: skip


_TRAINER_METRIC = re.compile(r"eval_(?:(.+?)_)?(real_accuracy|fake_accuracy|average_precision|roc_auc|accuracy|n_real|n_fake)")


def _is_metrics(data) -> bool:
    return isinstance(data, dict) and any(isinstance(v, dict) and "accuracy" in v for v in data.values())


def find_metrics(model_dir: Path, metrics=None) -> tuple[dict | None, str | None]:
    """(results, their source): the `deepvrm evaluate` JSON given, or found beside the model (metrics.json,
    eval_metrics.json), else the end-of-training evaluation of `deepvrm train` (eval_results.json)."""
    if metrics and not _is_metrics(_read_json(Path(metrics))):
        raise ExportError(f"{metrics} is not a `deepvrm evaluate` metrics file "
                          '({"<dataset>": {"accuracy": ..., "average_precision": ..., ...}}).')  # fmt: skip
    for path in [Path(metrics)] if metrics else [model_dir / name for name in METRICS_FILES]:
        if _is_metrics(data := _read_json(path, strict=False)):  # else another tool's file of that name
            return data, "`deepvrm evaluate` on this model"
    result: dict[str, dict] = {}
    for key, value in (_read_json(model_dir / "eval_results.json", strict=False) or {}).items():
        if (match := _TRAINER_METRIC.fullmatch(key)) and (value is None or isinstance(value, (int, float))):
            result.setdefault(match.group(1) or "evaluation set", {})[match.group(2)] = value
    result = {name: m for name, m in result.items() if "accuracy" in m}
    return (result, "the evaluation at the end of `deepvrm train`") if result else (None, None)


# ---------------------------------------------------------------------------------------------- the export
def write_export(model_dir, folder, *, repo_id=None, adapter_only=False, base_model=None, metrics=None, license=None,
                 datasets=None, tags=None, processor_dir=None, max_shard_size="5GB", link_weights=False) -> Export:  # fmt: skip
    """Write the export of `model_dir` into the existing, empty `folder`. `link_weights` links weight files
    that are not re-sharded instead of copying them (for an upload, which reads them the same)."""
    from transformers.dynamic_module_utils import custom_object_save

    from deepvrm import DeepVRMConfig, DeepVRMForConditionalGeneration, deepvrm_class
    from deepvrm.configuration_deepvrm import AUTO_MAPS

    from .model_card import public_training_record, render_card

    model_dir, folder = Path(model_dir).expanduser(), Path(folder)
    if not model_dir.is_dir():
        raise ExportError(f"{model_dir} is not a folder.")
    if base_model is not None and not is_hub_id(base_model):
        raise ExportError(f"--base-model must be a Hub repo id (owner/name), got {base_model!r}.")
    export = Export("adapter" if adapter_only else "full", folder, model_dir, repo_id=repo_id, license=license,
                    datasets=list(datasets or []), tags=list(tags or []))  # fmt: skip
    export.training = training = _read_json(model_dir / TRAINING_INFO) if (model_dir / TRAINING_INFO).exists() else {}
    if (model_dir / "config.json").exists():
        try:
            export.config = DeepVRMConfig.from_pretrained(model_dir)
        except Exception as error:  # strict validation, unreadable JSON, ...
            raise ExportError(f"{model_dir}/config.json is not a valid Deep-VRM (or Qwen2.5-VL, Qwen3-VL, Qwen3.5) config: {error}") from error
    config, processor_dir = export.config, Path(processor_dir).expanduser() if processor_dir else None

    if not adapter_only:
        if config is None:
            raise ExportError(f"{model_dir} has no config.json; a full export needs the model's config and weights.")
        infos = read_headers(_weight_files(model_dir))
        check_weights(config, infos)
        _write_weights(model_dir, infos, folder, max_shard_size, link_weights)
        candidates = (base_model, training.get("base_model"), getattr(config, "_name_or_path", None))
        export.base_model = next((c for c in candidates if is_hub_id(c)), None)
        processor = _processor(processor_dir or model_dir, config)
        if (model_dir / "generation_config.json").exists():
            shutil.copyfile(model_dir / "generation_config.json", folder / "generation_config.json")
    else:
        if missing := [name for name in ("adapter_config.json", "adapter_model.safetensors") if not (model_dir / name).exists()]:
            raise ExportError(f"--adapter-only: {model_dir} has no {', '.join(missing)} (safetensors only).")
        if training.get("stage") == 1:
            raise ExportError(f"{model_dir} is a stage-1 adapter (a plain Qwen2.5-VL LoRA, no Deep-VRM injection); "
                              "--adapter-only publishes stage-2 adapters.")  # fmt: skip
        if config is None and training.get("injection_layer") is None and training.get("base_model") is None:
            raise ExportError(f"{model_dir} has neither a Deep-VRM config.json nor {TRAINING_INFO}, so the card cannot "
                              "say how to rebuild the model the adapter belongs to.")  # fmt: skip
        export.adapter_config = adapter_config = _read_json(model_dir / "adapter_config.json")
        known = training.get("base_model") or adapter_config.get("base_model_name_or_path")
        candidates = (base_model, training.get("base_model"), adapter_config.get("base_model_name_or_path"))
        if (base := next((c for c in candidates if is_hub_id(c)), None)) is None:
            raise ExportError(f"The card of an adapter must name its base model on the Hub, and this adapter's base is "
                              f"{known!r}, which is not a Hub repo id. Pass --base-model OWNER/NAME (the model the "
                              "adapter was trained on, uploaded to the Hub).")  # fmt: skip
        export.base_model, infos = base, read_headers([model_dir / "adapter_model.safetensors"])
        published = dict(adapter_config, base_model_name_or_path=base)  # the base by its Hub id, not a local path
        (folder / "adapter_config.json").write_text(json.dumps(published, indent=2, sort_keys=True) + "\n")
        shutil.copyfile(model_dir / "adapter_model.safetensors", folder / "adapter_model.safetensors")
        if training:
            record = public_training_record(training, base)
            (folder / TRAINING_INFO).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        base_dir = Path(known).expanduser() if isinstance(known, str) else None
        base_config = _read_json(base_dir / "config.json", strict=False) if base_dir else None
        base_type = (base_config or {}).get("model_type", training.get("base_kind"))
        export.base_kind = "deepvrm" if str(base_type).startswith("deepvrm") else "qwen2_5_vl"
        source = processor_dir or next((d for d in (model_dir, base_dir) if d and d.is_dir() and _has_tokenizer(d)), None)
        processor = _processor(source, config) if source is not None else None

    if processor is not None:
        if config is not None and not config.has_prompt_ids:
            # e.g. an official-layout config: the prompt and answer ids of the shipped tokenizer go into
            # config.json, so the classifier never depends on finding a tokenizer at load time
            processor.configure_model(config)
        processor.save_pretrained(folder)
    if config is not None:
        generation_class = deepvrm_class(config.backbone, "generation")
        config.auto_map, config.architectures = dict(AUTO_MAPS[config.backbone]), config.architectures or [generation_class.__name__]
        config.save_pretrained(folder)
    custom_object_save(DeepVRMForConditionalGeneration, folder)

    export.parameters = sum(_numel(shape) for _, _, shape in infos.values())
    export.dtypes = sorted({dtype for _, dtype, _ in infos.values()})
    export.has_processor = processor is not None
    export.metrics, export.metrics_source = find_metrics(model_dir, metrics)
    export.trainer_state = _read_json(model_dir / "trainer_state.json", strict=False)
    (folder / "README.md").write_text(render_card(export), encoding="utf-8")
    return export


def export_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, verify: bool = False, log=None, **kwargs) -> Export:
    """`deepvrm push --dry-run OUT_DIR`: write exactly what would be uploaded to `out_dir` (new or empty),
    all or nothing (a temporary sibling folder, renamed into place at the end). `verify=True` first loads
    it in a Python process without deepvrm (`check_in_clean_process`)."""
    from .verify import check_in_clean_process

    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not empty; choose a new folder for the export.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        export = write_export(model_dir, staging, **kwargs)
        if verify:
            (log or print)(f"The export loads without deepvrm: {', '.join(check_in_clean_process(staging))}")
        os.chmod(staging, 0o755)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    export.folder = out_dir
    return export
