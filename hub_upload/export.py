"""What `deepvrm push` uploads, planned once and then written (`--dry-run`) or uploaded.

A full export of a model folder holds

    config.json                 Deep-VRM config, `auto_map` for the six Auto classes
    generation_config.json      when the model has one
    model.safetensors           or model-0000k-of-0000n.safetensors + model.safetensors.index.json
    configuration_deepvrm.py    remote code generated from the package (see remote_code.py)
    modeling_deepvrm.py
    processing_deepvrm.py
    processor_config.json       image processor + processor settings, `auto_map` for AutoProcessor
                                and AutoImageProcessor
    tokenizer.json, tokenizer_config.json, chat_template.jinja (+ whatever else the tokenizer saves)
    README.md                   the model card

An adapter-only export (a stage-2 run saved with `--save-adapter-only`) holds the LoRA adapter
(`adapter_config.json`, `adapter_model.safetensors`), `deepvrm_training.json` (how to rebuild the
base), the remote code, the Deep-VRM config and the processor when the run folder has them, and a
card that names the base model.

Weights are copied byte for byte (safetensors only), or re-sharded when one file is larger than
`max_shard_size`; they are checked against the model's parameter names first, so an incomplete
checkpoint is refused before anything is uploaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .remote_code import AUTO_MAP_MODEL, check_remote_files, generate_remote_code

PROCESSOR_FILES = (
    "processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json",
)  # fmt: skip
TRAINING_INFO = "deepvrm_training.json"  # written by `deepvrm train` beside an adapter
METRICS_FILES = ("metrics.json", "eval_metrics.json")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Remote files a previous export may have left that this one does not replace: removed in the same commit.
MANAGED_PATTERNS = (
    "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "adapter_config.json",
    "configuration_deepvrm.py", "modeling_deepvrm.py", "processing_deepvrm.py", TRAINING_INFO,
)  # fmt: skip
DEFAULT_MAX_SHARD_SIZE = "5GB"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ExportError(ValueError):
    """The model folder cannot be exported as asked (the message says why and what to do)."""


@dataclass
class ExportFile:
    """One file of the export: its bytes (generated) or the local file holding them (copied)."""

    path_in_repo: str
    content: bytes | None = None
    source: Path | None = None

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else self.source.stat().st_size


@dataclass
class ExportPlan:
    kind: str  # "full" or "adapter"
    files: list[ExportFile]
    model_dir: Path
    summary: dict = field(default_factory=dict)
    scratch: tempfile.TemporaryDirectory | None = None  # holds re-sharded weights until cleanup()

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, path_in_repo: str) -> ExportFile | None:
        return next((f for f in self.files if f.path_in_repo == path_in_repo), None)

    def cleanup(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()
            self.scratch = None

    def describe(self) -> str:
        lines = [f"{self.kind} export of {self.model_dir}: {len(self.files)} files, {human_size(self.total_size)}"]
        for f in sorted(self.files, key=lambda f: f.path_in_repo):
            lines.append(f"  {f.path_in_repo:<40} {human_size(f.size):>10}")
        return "\n".join(lines)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "5GB", "500MB", "2GiB" (decimal units, as transformers reads them)."""
    if isinstance(size, int) and size > 0:
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)\s*", str(size).upper())
    if not match or float(match.group(1)) <= 0:
        raise ExportError(f"Cannot read the size {size!r} (write e.g. 5GB or 500MB).")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ExportError(f"Cannot read {path}: {error}") from error


# ---------------------------------------------------------------------------------------------- config
def _load_config(folder: Path, overrides: dict | None = None):
    from deepvrm import DeepVRMConfig

    try:
        return DeepVRMConfig.from_pretrained(folder, **(overrides or {}))
    except Exception as error:  # strict validation, unreadable JSON, ...
        raise ExportError(f"{folder}/config.json is not a valid Deep-VRM (or Qwen2.5-VL) config: {error}") from error


def _config_file(config) -> ExportFile:
    config.auto_map = dict(AUTO_MAP_MODEL)
    if not config.architectures:
        config.architectures = ["DeepVRMForConditionalGeneration"]
    return ExportFile("config.json", content=config.to_json_string(use_diff=True).encode("utf-8"))


# ---------------------------------------------------------------------------------------------- weights
def _safetensors_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        weight_map = _read_json(index).get("weight_map") or {}
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (model_dir / f).exists()]
        if missing:
            raise ExportError(f"{index} names shards that are not there: {missing}.")
        return [model_dir / f for f in files]
    single = model_dir / "model.safetensors"
    if single.exists():
        return [single]
    pickles = sorted(p.name for p in model_dir.glob("*.bin"))
    if pickles:
        raise ExportError(
            f"{model_dir} holds PyTorch pickle weights ({', '.join(pickles)}); Deep-VRM exports safetensors only. "
            "Load the model and save it again with save_pretrained() (safetensors is the default)."
        )
    if (model_dir / "adapter_config.json").exists():
        raise ExportError(
            f"{model_dir} holds a LoRA adapter, not full weights: push it with --adapter-only, or merge it into its "
            "base first (deepvrm.trainers.models.load_adapter_folder(path).save_pretrained(out))."
        )
    raise ExportError(f"{model_dir} has no model weights (model.safetensors or model.safetensors.index.json).")


def _tensor_infos(files: list[Path]) -> dict[str, tuple[Path, str, list[int], int]]:
    """key -> (file, dtype, shape, bytes), read from the safetensors headers only."""
    import struct

    infos = {}
    for path in files:
        try:
            with open(path, "rb") as handle:
                (header_len,) = struct.unpack("<Q", handle.read(8))
                if header_len > 100_000_000:
                    raise ValueError("header too large")
                header = json.loads(handle.read(header_len))
            data_len = path.stat().st_size - 8 - header_len
        except (OSError, ValueError, struct.error) as error:
            raise ExportError(f"{path} is not a readable safetensors file: {error}") from error
        for key, info in header.items():
            if key == "__metadata__":
                continue
            start, end = info["data_offsets"]
            if end > data_len:
                raise ExportError(f"{path} is truncated: {key} ends at byte {end}, the data holds {data_len}.")
            if key in infos:
                raise ExportError(f"{key} appears in two weight files ({infos[key][0].name}, {path.name}).")
            infos[key] = (path, info["dtype"], info["shape"], end - start)
    return infos


def _canonical_keys(keys, class_name: str = "DeepVRMForConditionalGeneration") -> dict[str, str]:
    """Disk key -> in-memory name, with the renaming rules the loader applies (official/legacy layouts)."""
    import deepvrm  # noqa: F401  (registers the renaming rules)
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    rules = []
    for renaming in get_checkpoint_conversion_mapping(class_name) or []:
        sources, targets = renaming.source_patterns, renaming.target_patterns
        if len(sources) == 1 and len(targets) == 1:
            rules.append((re.compile(sources[0]), targets[0]))
    result = {}
    for key in keys:
        name = key
        for pattern, target in rules:
            name = pattern.sub(target, name, count=1)
        result[key] = name
    return result


def check_weights(config, infos: dict) -> dict:
    """Refuse weights that miss parameters of the model; return counts for the summary."""
    import torch

    from deepvrm import DeepVRMForConditionalGeneration

    with torch.device("meta"):
        model = DeepVRMForConditionalGeneration(config)
    expected = set(model.state_dict())
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    present = set(_canonical_keys(infos).values())
    missing = sorted(k for k in expected - present if k not in tied and not k.endswith("fusion.gate"))
    if missing:
        shown = ", ".join(missing[:6]) + (f", ... ({len(missing)} in all)" if len(missing) > 6 else "")
        hint = ""
        if any("visual_low_level" in k for k in missing):
            hint = " It has no low-level encoder: is it a plain Qwen2.5-VL model? Build a Deep-VRM with from_base_model first."
        raise ExportError(f"The weights miss parameters of the model: {shown}.{hint}")
    unexpected = sorted(present - expected)
    params = sum(_numel(shape) for _, _, shape, _ in infos.values())
    dtypes = sorted({dtype for _, dtype, _, _ in infos.values()})
    return {"parameters": params, "dtypes": dtypes, "unexpected_keys": unexpected[:20]}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _reshard(infos: dict, max_shard_size: int, out: Path, prefix: str = "model") -> list[ExportFile]:
    """Write the tensors into shards of at most `max_shard_size` bytes (a larger tensor gets its own)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    groups: list[list[str]] = [[]]
    size = 64  # header: 8-byte length + metadata
    for key in sorted(infos):
        path, dtype, shape, data = infos[key]
        # tensor bytes + its header entry, so that the file (not just its data) stays within the limit
        nbytes = data + len(json.dumps({key: {"dtype": dtype, "shape": shape, "data_offsets": [10**12, 10**12]}}))
        if groups[-1] and size + nbytes > max_shard_size:
            groups.append([])
            size = 64
        groups[-1].append(key)
        size += nbytes
    count = len(groups)
    weight_map, files, total = {}, [], 0
    handles = {}
    try:
        for number, keys in enumerate(groups, 1):
            name = f"{prefix}-{number:05d}-of-{count:05d}.safetensors"
            tensors = {}
            for key in keys:
                path = infos[key][0]
                if path not in handles:
                    handles[path] = safe_open(str(path), framework="pt")
                tensors[key] = handles[path].get_tensor(key)
                weight_map[key] = name
                total += infos[key][3]
            save_file(tensors, str(out / name), metadata={"format": "pt"})
            files.append(ExportFile(name, source=out / name))
            del tensors
    finally:
        handles.clear()
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    files.append(ExportFile(f"{prefix}.safetensors.index.json", content=_json_bytes(index)))
    return files


def _weights(model_dir: Path, config, max_shard_size: int, scratch_parent: str | None, plan: ExportPlan) -> list[ExportFile]:
    files = _safetensors_files(model_dir)
    infos = _tensor_infos(files)
    plan.summary.update(check_weights(config, infos))
    if max(f.stat().st_size for f in files) <= max_shard_size:
        result = [ExportFile(f.name, source=f) for f in files]
        index = model_dir / "model.safetensors.index.json"
        if index.exists():
            result.append(ExportFile(index.name, source=index))
        return result
    plan.scratch = tempfile.TemporaryDirectory(prefix="deepvrm-export-", dir=scratch_parent)
    return _reshard(infos, max_shard_size, Path(plan.scratch.name))


# ---------------------------------------------------------------------------------------------- processor
def _processor_files(source: Path, config, scratch: Path):
    """The processor saved through the package's classes (so its settings are Deep-VRM's), with auto_map.

    `config` (a Deep-VRM config, or a callable giving one) is needed only to build the processor around
    a bare tokenizer (e.g. Qwen2.5-VL's), whose pixel budget and patch sizes come from it.
    Returns (files, processor)."""
    from deepvrm import DeepVRMProcessor

    processor_config = source / "processor_config.json"
    has_tokenizer = (source / "tokenizer_config.json").exists() or (source / "tokenizer.json").exists()
    if not has_tokenizer:
        raise ExportError(
            f"{source} has no tokenizer, and the export must carry one (the pipeline and the chat interface need it). "
            "Save the processor there (processor.save_pretrained(MODEL_DIR)) or pass --processor DIR."
        )
    try:
        if processor_config.exists() and _read_json(processor_config).get("processor_class") == "DeepVRMProcessor":
            processor = DeepVRMProcessor.from_pretrained(source)
        else:
            from transformers import AutoTokenizer

            from deepvrm.configuration.init_model import build_processor

            config = config() if callable(config) else config
            processor = build_processor(config, tokenizer=AutoTokenizer.from_pretrained(source))
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(f"Cannot load the processor of {source}: {error}") from error
    out = scratch / "processor"
    out.mkdir()
    processor.save_pretrained(out)
    files = []
    for path in sorted(out.iterdir()):
        if not path.is_file():
            raise ExportError(f"The processor wrote a folder ({path.name}); Deep-VRM exports expect a flat processor.")
        content = path.read_bytes()
        if path.name == "processor_config.json":
            data = json.loads(content)
            data["auto_map"] = {k: AUTO_MAP_MODEL[k] for k in ("AutoProcessor", "AutoImageProcessor")}
            if isinstance(data.get("image_processor"), dict):
                data["image_processor"]["auto_map"] = {"AutoImageProcessor": AUTO_MAP_MODEL["AutoImageProcessor"]}
            content = _json_bytes(data)
        elif path.name == "preprocessor_config.json":
            data = json.loads(content)
            data["auto_map"] = {k: AUTO_MAP_MODEL[k] for k in ("AutoProcessor", "AutoImageProcessor")}
            content = _json_bytes(data)
        files.append(ExportFile(path.name, content=content))
    return files, processor


# ---------------------------------------------------------------------------------------------- metrics
TRAINER_EVAL_FILE = "eval_results.json"  # HF Trainer's save_metrics("eval"): {"eval_<set>_<metric>": value}
_TRAINER_METRIC = re.compile(r"eval_(?:(.+?)_)?(real_accuracy|fake_accuracy|average_precision|roc_auc|accuracy|n_real|n_fake)")


def trainer_eval_metrics(path: Path) -> dict | None:
    """The evaluation at the end of `deepvrm train` (eval_results.json) in the `deepvrm evaluate` shape."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    result: dict[str, dict] = {}
    for key, value in data.items() if isinstance(data, dict) else ():
        match = _TRAINER_METRIC.fullmatch(key)
        if match and (value is None or isinstance(value, (int, float))):
            result.setdefault(match.group(1) or "evaluation set", {})[match.group(2)] = value
    return {name: m for name, m in result.items() if "accuracy" in m} or None


def find_metrics(model_dir: Path, metrics: str | os.PathLike | None) -> tuple[dict | None, Path | None]:
    """The `deepvrm evaluate` metrics given, or found beside the model (metrics.json, eval_metrics.json;
    else the end-of-training evaluation of `deepvrm train`, eval_results.json)."""
    path = Path(metrics) if metrics else next((model_dir / n for n in METRICS_FILES if (model_dir / n).exists()), None)
    if path is None and (model_dir / TRAINER_EVAL_FILE).exists():
        data = trainer_eval_metrics(model_dir / TRAINER_EVAL_FILE)
        return (data, model_dir / TRAINER_EVAL_FILE) if data else (None, None)
    if path is None:
        return None, None
    if not metrics:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, None
        if not isinstance(data, dict) or not any(isinstance(v, dict) and "accuracy" in v for v in data.values()):
            return None, None  # some other tool's file of that name: not ours to put in the card
        return data, path
    if path is None:
        return None, None
    data = _read_json(path)
    if not isinstance(data, dict) or not any(isinstance(v, dict) and "accuracy" in v for v in data.values()):
        raise ExportError(
            f"{path} is not a `deepvrm evaluate` metrics file "
            '({"<dataset>": {"accuracy": ..., "average_precision": ..., ...}}).'
        )
    return data, path


# ---------------------------------------------------------------------------------------------- plans
def _hub_id(value) -> str | None:
    """A Hub repo id (owner/name) or None; local paths are not ids."""
    if not isinstance(value, str) or not HUB_ID.match(value) or Path(value).expanduser().exists():
        return None
    return value


def plan_export(
    model_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    adapter_only: bool = False,
    base_model: str | None = None,
    metrics: str | os.PathLike | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    tags: list[str] | None = None,
    processor_dir: str | os.PathLike | None = None,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    scratch_dir: str | None = None,
) -> ExportPlan:
    """Everything the upload will hold, in memory or as local files; nothing is written but re-sharded
    weights (in a temporary folder that `plan.cleanup()` removes)."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise ExportError(f"{model_dir} is not a folder.")
    if base_model is not None and not _hub_id(base_model):
        raise ExportError(f"--base-model must be a Hub repo id (owner/name), got {base_model!r}.")
    plan = ExportPlan(kind="adapter" if adapter_only else "full", files=[], model_dir=model_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="deepvrm-export-small-") as small:
            _fill_plan(plan, Path(small), repo_id, base_model, metrics, license, datasets, processor_dir,
                       parse_size(max_shard_size), scratch_dir, tags)  # fmt: skip
    except BaseException:
        plan.cleanup()
        raise
    names = [f.path_in_repo for f in plan.files]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        plan.cleanup()
        raise ExportError(f"Export plan names files twice: {sorted(duplicates)} (bug).")
    return plan


def _fill_plan(plan, small: Path, repo_id, base_model, metrics, license, datasets, processor_dir, max_shard, scratch_dir, tags=None):
    from .model_card import CardInfo, public_training_record, render_card

    model_dir = plan.model_dir
    training = _read_json(model_dir / TRAINING_INFO) if (model_dir / TRAINING_INFO).exists() else {}
    config = _load_config(model_dir) if (model_dir / "config.json").exists() else None
    info = CardInfo(repo_id=repo_id, kind=plan.kind, training=training, license=license, datasets=list(datasets or []),
                    tags=list(tags or []))  # fmt: skip

    if plan.kind == "full":
        if config is None:
            raise ExportError(f"{model_dir} has no config.json; a full export needs the model's config and weights.")
        info.config = config
        plan.files += _weights(model_dir, config, max_shard, scratch_dir, plan)
        info.base_model = base_model or _hub_id(training.get("base_model")) or _hub_id(getattr(config, "_name_or_path", None))
    else:
        missing = [name for name in ADAPTER_FILES if not (model_dir / name).exists()]
        if missing:
            extra = " (adapter_model.bin is a pickle: save the adapter with safe_serialization)" if (model_dir / "adapter_model.bin").exists() else ""
            raise ExportError(f"--adapter-only: {model_dir} has no {', '.join(missing)}{extra}.")
        if training.get("stage") == 1:
            raise ExportError(
                f"{model_dir} is a stage-1 adapter (a plain Qwen2.5-VL LoRA, no Deep-VRM injection); "
                "--adapter-only publishes stage-2 adapters."
            )
        adapter_config = _read_json(model_dir / "adapter_config.json")
        if config is None and training.get("injection_layer") is None and training.get("base_model") is None:
            raise ExportError(
                f"{model_dir} has neither a Deep-VRM config.json nor {TRAINING_INFO}, so the card cannot say how to "
                "rebuild the model the adapter belongs to."
            )
        info.config = config
        info.adapter_config = adapter_config
        info.base_model = (
            base_model
            or _hub_id(training.get("base_model"))
            or _hub_id(adapter_config.get("base_model_name_or_path"))
        )
        if info.base_model is None:
            known = training.get("base_model") or adapter_config.get("base_model_name_or_path")
            raise ExportError(
                "The card of an adapter must name its base model on the Hub, and this adapter's base is "
                f"{known!r}, which is not a Hub repo id. Pass --base-model OWNER/NAME (the model the adapter was "
                "trained on, uploaded to the Hub)."
            )
        info.base_kind = _base_kind(training, adapter_config)
        adapter_config = dict(adapter_config, base_model_name_or_path=info.base_model)
        plan.files.append(ExportFile("adapter_config.json", content=_json_bytes(adapter_config)))
        plan.files.append(ExportFile("adapter_model.safetensors", source=model_dir / "adapter_model.safetensors"))
        adapter_infos = _tensor_infos([model_dir / "adapter_model.safetensors"])
        plan.summary.update(
            parameters=sum(_numel(s) for _, _, s, _ in adapter_infos.values()),
            dtypes=sorted({d for _, d, _, _ in adapter_infos.values()}),
        )
        if training:
            record = public_training_record(training, info.base_model)
            plan.files.append(ExportFile(TRAINING_INFO, content=_json_bytes(record)))

    if plan.kind == "full" and (model_dir / "generation_config.json").exists():
        plan.files.append(ExportFile("generation_config.json", source=model_dir / "generation_config.json"))

    processor_source = _processor_source(plan, processor_dir, training)
    if plan.kind == "full" or processor_source is not None:
        processor_source = processor_source or model_dir
        files, processor = _processor_files(processor_source, config or (lambda: _config_for_processor(processor_source, training)), small)
        plan.files += files
        plan.summary["has_processor"] = True
        if config is not None and not config.has_prompt_ids:
            # e.g. an official-layout config: write the prompt and answer ids from the shipped tokenizer
            # into config.json, so the classifier never depends on finding a tokenizer at load time
            processor.configure_model(config)
    if config is not None:
        plan.files.append(_config_file(config))

    remote = generate_remote_code()
    plan.files += [ExportFile(name, content=text.encode("utf-8")) for name, text in remote.files.items()]
    plan.summary["remote_code"] = {"sources": remote.sources, "left_out": remote.left_out, "hash": remote.source_hash}

    info.metrics, info.metrics_path = find_metrics(model_dir, metrics)
    state_file = model_dir / "trainer_state.json"
    if state_file.exists():
        try:
            info.trainer_state = json.loads(state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info.trainer_state = None
    info.summary = plan.summary
    plan.files.append(ExportFile("README.md", content=render_card(info).encode("utf-8")))
    plan.summary["base_model"] = info.base_model


def _config_for_processor(source: Path, training: dict):
    """A Deep-VRM config for building a processor when the export has none of its own."""
    for folder in (source, training.get("base_model")):
        if isinstance(folder, (str, Path)) and (Path(folder).expanduser() / "config.json").exists():
            return _load_config(Path(folder).expanduser())
    raise ExportError(
        f"{source} has a tokenizer but no Deep-VRM processor and no config.json to build one from; "
        "save the DeepVRMProcessor there, or pass --processor DIR."
    )


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("tokenizer_config.json", "tokenizer.json"))


def _processor_source(plan: ExportPlan, processor_dir, training: dict) -> Path | None:
    """Where the processor comes from: --processor, the model folder, or (adapters) a local base folder."""
    if processor_dir:
        return Path(processor_dir).expanduser()
    if _has_tokenizer(plan.model_dir):
        return plan.model_dir
    if plan.kind == "adapter":
        base = training.get("base_model")
        if isinstance(base, str) and Path(base).expanduser().is_dir() and _has_tokenizer(Path(base).expanduser()):
            return Path(base).expanduser()
    return None


def _base_kind(training: dict, adapter_config: dict) -> str:
    """"deepvrm" when the adapter's base is a Deep-VRM checkpoint, "qwen2_5_vl" when Deep-VRM is built
    from a Qwen2.5-VL base (the paper's stage 2); read from a local base's config when there is one."""
    for candidate in (training.get("base_model"), adapter_config.get("base_model_name_or_path")):
        if isinstance(candidate, str) and (Path(candidate).expanduser() / "config.json").exists():
            model_type = _read_json(Path(candidate).expanduser() / "config.json").get("model_type")
            return "deepvrm" if model_type == "deepvrm" else "qwen2_5_vl"
    return training.get("base_kind") or "qwen2_5_vl"


# ---------------------------------------------------------------------------------------------- writing
def write_plan(plan: ExportPlan, out_dir: str | os.PathLike) -> Path:
    """Write the export to `out_dir` (which must not exist or be empty), all or nothing: files go to a
    temporary sibling folder that is renamed into place at the end."""
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not empty; choose a new folder for the export.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        for f in plan.files:
            target = staging / f.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.content is not None:
                target.write_bytes(f.content)
            elif plan.scratch is not None and Path(plan.scratch.name) in f.source.parents:
                shutil.move(str(f.source), target)
                f.source = target
            else:
                shutil.copyfile(f.source, target)
        os.chmod(staging, 0o755)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for f in plan.files:
        if f.source is not None and staging in f.source.parents:
            f.source = out_dir / f.source.relative_to(staging)
    return out_dir


def export_model(model_dir: str | os.PathLike, out_dir: str | os.PathLike, *, verify: bool = False, log=None, **kwargs) -> ExportPlan:
    """`deepvrm push --dry-run OUT_DIR`: write exactly what would be uploaded, upload nothing.

    `verify=True` first imports the remote code in a clean process (see `verify_plan`); the folder is
    written only when everything succeeded.
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} exists and is not empty; choose a new folder for the export.")
    scratch_dir = kwargs.pop("scratch_dir", None) or str(out_dir.parent if out_dir.parent.exists() else Path.cwd())
    plan = plan_export(model_dir, scratch_dir=scratch_dir, **kwargs)
    try:
        if verify:
            loaded = verify_plan(plan)
            if log:
                log(f"Remote code loads without deepvrm: {', '.join(loaded)}")
        write_plan(plan, out_dir)
    finally:
        plan.cleanup()
    return plan


def verify_plan(plan: ExportPlan) -> list[str]:
    """Import the plan's remote code, and load its config and processor, in a Python process where
    `deepvrm` cannot be imported (the weights are not needed for that and are not written)."""
    from .remote_code import check_in_clean_process

    with tempfile.TemporaryDirectory(prefix="deepvrm-verify-") as folder:
        for f in plan.files:
            if f.content is not None:
                target = Path(folder) / f.path_in_repo
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(f.content)
        return check_in_clean_process(folder)


def check_export(plan: ExportPlan) -> None:
    """Static checks of a plan's remote code (already done at generation; cheap to repeat)."""
    files = {f.path_in_repo: f.content.decode("utf-8") for f in plan.files if f.path_in_repo.endswith(".py")}
    check_remote_files(files)
