"""`Detector`: a loaded Deep-VRM classifier that scores many images, batch by batch.

    detector = Detector.from_pretrained("path/or/hub-id", device="auto", dtype="auto", batch_size=8)
    for result in detector.score_paths(paths):       # in input order, as each batch finishes
        print(result.path, result.label, result.score, result.error)
    detector.score_images([pil_image, ...])          # -> numpy array of P(fake)

The model is loaded once and kept; each batch is one forward pass of the classification path
(`DeepVRMForImageClassification`: the chat prompt, one image each, two answer-token logits), and
P(fake) = softmax(logits)[:, fake]. While the model runs on one batch, worker threads open and
preprocess the next. A file that cannot be opened fails alone (see `images`); a batch whose
forward pass fails is retried image by image (`batches.run_or_split`), so one bad image never
costs its neighbours. A score that is not a finite number (a model with NaN weights, a float16
overflow) is that image's error, never a verdict. `Detector.from_pretrained()` without a model uses the shipped demo model
and says on stderr what that is (`sources.default_model`).

`compile=True` (or a `torch.compile` mode name) compiles the model's repeated blocks in place with
`torch.compile` (inductor): every block of both vision towers, and the decoder layers' norms and
MLPs (`compile_model`, `compiled_regions`). Off by default on every device: on a CPU it does not
pay (benchmarks/bench_compile.py), and on a GPU it is to be switched on by default only where the
GPU check (benchmarks/gpu_check.py --compile) shows that it does. Scores are those of the
uncompiled model within round-off (tests/test_compile.py).
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from deepvrm.inference.batches import batches, run_or_split
from deepvrm.inference.devices import COMPILE_MODES, resolve_device, resolve_dtype
from deepvrm.inference.errors import ModelLoadError, one_line
from deepvrm.inference.images import DEFAULT_MAX_PIXELS, ImageError, fit_aspect_ratio, open_image
from deepvrm.inference.sources import default_model, hub_error, resolve_model


# `compile=` values: off, on (inductor's default mode), or one of torch.compile's modes by name.
COMPILE_OFF = (False, None, "off", "none", "no", "false")
COMPILE_ON = (True, "on", "yes", "true")


def compile_mode(compile) -> str | None:
    """The torch.compile mode that a `compile=` value asks for, or None for no compilation.
    False/None/"off" -> None; True/"on" -> "default"; a mode name -> itself. Raises `ValueError`
    for anything else (the command line can call this to refuse a bad value before loading)."""
    if isinstance(compile, str):
        compile = compile.strip().lower()
    if compile in COMPILE_OFF:
        return None
    if compile in COMPILE_ON:
        return "default"
    if compile in COMPILE_MODES:
        return compile
    raise ValueError(f"compile must be true/false or one of {', '.join(COMPILE_MODES)}; got {compile!r}.")


def compiled_regions(model) -> list[torch.nn.Module]:
    """The modules whose `forward` `compile_model` compiles: every block of each vision tower
    (`visual` and, in the separate-tower form, `visual_low_level`), and in the decoder every layer's
    norms and MLP and the final norm.

    Regional compilation: the blocks of a tower (the MLPs, the norms) are instances of one class
    called on tensors of the same shapes, so dynamo traces and inductor compiles each kind once and
    every instance reuses that code (its weights are graph inputs). A block of a tower is compiled
    whole (norms, attention with its rotary embedding, MLP, residuals: the elementwise work around
    the matmuls fuses). A decoder layer is not compiled whole: on the classification path its
    attention receives the cache that holds the prompt prefix's keys/values of every layer, and its
    own index, so dynamo would specialise one graph per layer (28 compilations, past the recompile
    limit); the norms and the MLP see only their input. What runs between these (patch embedding,
    window order, the grid plan, the chat prompt, M-RoPE positions, masks) stays eager."""
    inner = model.model if hasattr(model, "model") and hasattr(model.model, "vision_towers") else model
    regions: list[torch.nn.Module] = []
    for tower in inner.vision_towers:
        regions += list(tower.blocks)
    for layer in inner.language_model.layers:
        regions += [getattr(layer, name) for name in ("input_layernorm", "post_attention_layernorm", "mlp")
                    if isinstance(getattr(layer, name, None), torch.nn.Module)]
    if isinstance(getattr(inner.language_model, "norm", None), torch.nn.Module):
        regions.append(inner.language_model.norm)
    return regions


# Graphs per compiled function that dynamo may keep (its default, 8, is per code object: the norms
# meet prompts, the cached prefix, the answer position and strided views of them; a tower's blocks
# meet window and full attention at each batch shape). Past it a function would run eagerly.
RECOMPILE_LIMIT = 64


def raise_recompile_limit(limit: int) -> None:
    """Let dynamo keep at least `limit` graphs per compiled function, for the whole process (never
    lowered). The setting is `recompile_limit` from torch 2.7, `cache_size_limit` before."""
    import torch._dynamo

    name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), limit))


def compile_model(model, compile=True, dynamic: bool | None = None, backend="inductor"):
    """Compile `model`'s repeated blocks in place (`compiled_regions`: each one's `forward` becomes
    `torch.compile(forward)`; module names, parameters and state dicts are unchanged) and return it;
    `compile` off undoes it.

    `compile`: True or a torch.compile mode (see `compile_mode`). `dynamic`: torch.compile's. With
    None (the default) the first shape is compiled static; a later call of another shape (another
    batch size, the last partial batch, another image grid) recompiles once with those sizes
    symbolic, which then serves every size, so a long run does not recompile per batch. (A fixed
    pixel budget and a fixed batch size give one shape: static kernels, and CUDA graphs with
    `compile="reduce-overhead"`.) `backend`: torch.compile's (tests use a cheap one). Raises
    dynamo's recompile limit to `RECOMPILE_LIMIT` for the process (a limit, never lowered).

    Graph breaks that remain are data-dependent, on purpose: the vision attention groups its
    windows by length (`torch.unique(...).tolist()`, fast_vision.py; Qwen3-VL's stock attention
    splits per image), so each block is two graphs around that."""
    mode = compile_mode(compile)
    if mode is not None:
        raise_recompile_limit(RECOMPILE_LIMIT)
    for module in compiled_regions(model):
        module.__dict__.pop("forward", None)  # back to the class's forward
        if mode is not None:
            module.forward = torch.compile(module.forward, mode=None if mode == "default" else mode, dynamic=dynamic,
                                           backend=backend)
    model._deepvrm_compile_mode = mode  # note: a copy.deepcopy of a compiled model would run the original's
    return model                         # compiled forwards; undo (`compile_model(m, False)`) before copying


def is_compiled(model) -> bool:
    """Whether `compile_model` compiled `model` (and did not undo it)."""
    return getattr(model, "_deepvrm_compile_mode", None) is not None


@dataclass
class ScoreResult:
    """One image's outcome: `score` = P(fake), or `error` (a one-line reason) when it failed. From a
    `Detector` the score is always a finite number: a NaN or infinite output is an error."""

    path: str
    score: float | None = None
    error: str | None = None
    threshold: float = 0.5

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str | None:
        if self.score is None:
            return None
        return "fake" if self.score >= self.threshold else "real"

    def to_row(self) -> dict:
        """The row `deepvrm detect --output` writes."""
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "label": self.label, "score": self.score}


def load_classifier(model_id: str, device: torch.device, dtype: torch.dtype, **load_kwargs):
    """`DeepVRMForImageClassification` on `device` in `dtype` and its image processor, from a deepvrm
    folder, an official-layout Deep-VRM folder (`model_type: qwen2_5_vl`) or a Hub id (told apart
    by `deepvrm.inference.sources.resolve_model`). Raises `ModelLoadError` with the reason."""
    from deepvrm import DeepVRMForImageClassification, DeepVRMImageProcessor

    source = resolve_model(model_id)
    model_id = source.name
    if source.is_deepvrm is False:
        raise ModelLoadError(
            f"{model_id} is a plain Qwen2.5-VL checkpoint (no low-level encoder `visual_low_level.*`): scoring needs a "
            "Deep-VRM model (`deepvrm train --stage 2` builds one from it)."
        )
    try:
        # The class itself (not AutoModel...): its config class also reads official `qwen2_5_vl`
        # configs as Deep-VRM, which the Auto mapping would route to plain Qwen2.5-VL.
        classifier = DeepVRMForImageClassification.from_pretrained(model_id, dtype=dtype, **load_kwargs)
    except Exception as error:
        if not source.local and isinstance(error, OSError):
            raise hub_error(model_id, error) from error
        raise ModelLoadError(f"cannot load the model {model_id!r}: {one_line(error)}") from error
    classifier.to(device).eval()
    if not classifier.config.has_prompt_ids:
        raise ModelLoadError(
            f"{model_id}: the model has no prompt token ids and no usable tokenizer, so it cannot build its "
            "classification prompt (see DeepVRMProcessor.configure_model)."
        )
    processor = None
    try:
        from transformers import AutoImageProcessor

        loaded = AutoImageProcessor.from_pretrained(model_id, **load_kwargs)
        if isinstance(loaded, DeepVRMImageProcessor):
            processor = loaded
    except Exception:
        pass
    if processor is None:
        # Official folders ship Qwen2-VL's processor with Qwen's own pixel range; Deep-VRM scores at
        # the fixed budget its config names (the paper: 512x512).
        processor = DeepVRMImageProcessor.from_config(classifier.config)
    return classifier, processor


class Detector:
    """Scores images with a Deep-VRM classifier kept in memory (see the module docstring)."""

    def __init__(
        self,
        model,
        image_processor,
        batch_size: int = 8,
        threshold: float = 0.5,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
        compile=False,
    ):
        """`compile`: False (default), True, or a torch.compile mode name (`compile_mode`): compiles
        `model`'s blocks in place (`compile_model`); the first batches of each new shape pay the
        compilation (tens of seconds), later ones run the compiled code."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        mode = compile_mode(compile)
        self.model = model.eval()
        if mode is not None:
            compile_model(self.model, mode)
        self.compile = mode
        self.image_processor = image_processor
        self.batch_size = batch_size
        self.threshold = threshold
        self.max_pixels = max_pixels
        # Threads that open and preprocess images ahead of the model (None: up to 4, one per core).
        self.workers = min(4, os.cpu_count() or 1) if workers is None else max(0, int(workers))
        labels = {v.lower(): k for k, v in model.config.id2label.items()}
        self.fake_index = labels.get("fake", 1)

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        threshold: float = 0.5,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        workers: int | None = None,
        compile=False,
        **load_kwargs,
    ) -> "Detector":
        """`model`: a folder or a Hub id; None: the shipped demo model, announced on stderr as what it
        is (a demonstration, not a real-world detector). `compile`: see `__init__` (off by default).
        Raises `ValueError` for a bad device/dtype/compile value and `ModelLoadError` (also a
        `ValueError`) for a model it cannot load."""
        compile_mode(compile)  # a bad value is a usage error before anything loads
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)  # a bad dtype is a usage error before the notice
        if model is None:
            model = default_model()
        classifier, processor = load_classifier(model, torch_device, torch_dtype, **load_kwargs)
        return cls(classifier, processor, batch_size=batch_size, threshold=threshold, max_pixels=max_pixels, workers=workers,
                   compile=compile)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ preparing images
    def _prepare_one(self, image) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel patches `[n, patch_dim]` and grid `[1, 3]` of one RGB image."""
        # Qwen2-VL's processor refuses aspect ratios of 200 and more: pad such strips (fit_aspect_ratio).
        inputs = self.image_processor(images=[fit_aspect_ratio(image)], return_tensors="pt")
        return inputs["pixel_values"], inputs["image_grid_thw"]

    def _prepare_path(self, path: str, transform: Callable | None):
        """(pixel_values, grid) or an error string for one file."""
        try:
            image = open_image(path, max_pixels=self.max_pixels)
        except ImageError as error:
            return error.reason
        try:
            if transform is not None:
                image = transform(image)
            return self._prepare_one(image)
        except Exception as error:
            return "cannot preprocess it: " + one_line(error)

    # ------------------------------------------------------------------ the forward pass
    @torch.inference_mode()
    def _forward(self, prepared: list[tuple[torch.Tensor, torch.Tensor]]) -> np.ndarray:
        device = self.device
        dtype = self.model.dtype
        pixel_values = torch.cat([p for p, _ in prepared]).to(device=device, dtype=dtype)
        grid = torch.cat([g for _, g in prepared]).to(device)
        logits = self.model(pixel_values=pixel_values, image_grid_thw=grid).logits
        return torch.softmax(logits.float(), dim=-1)[:, self.fake_index].cpu().numpy()

    def _score_prepared(self, prepared: list) -> list[float | str]:
        """P(fake) per prepared image, or an error string; a failing batch is retried one by one.
        A score that is not a finite number (NaN or infinity) is an error, never a verdict."""
        outcomes: list[float | str] = []
        for _, scores, error in run_or_split(prepared, self._forward):
            if error is None:
                outcomes += [float(p) if math.isfinite(p) else self._non_finite(p) for p in scores]
            else:
                outcomes.append("model failed on it: " + one_line(error))
        return outcomes

    def _non_finite(self, score) -> str:
        reason = f"the model gave a non-finite score ({float(score)}), not a probability: its weights or activations hold NaN or infinity"
        if self.model.dtype == torch.float16:
            reason += " (float16 overflows easily: try bfloat16 or float32)"
        return reason

    def score_images(self, images: Iterable) -> np.ndarray:
        """P(fake) of in-memory images (any PIL mode, converted as `image_io.to_rgb` does).
        Raises if an image cannot be scored (a ValueError for a NaN or infinite score); use
        `score_paths` for per-file errors."""
        from deepvrm.inference.images import to_rgb

        scores = []
        for batch in batches(list(images), self.batch_size):
            scores.append(self._forward([self._prepare_one(to_rgb(image)) for image in batch]))
        result = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
        bad = np.flatnonzero(~np.isfinite(result))
        if len(bad):
            raise ValueError(f"image(s) {bad[:10].tolist()}: " + self._non_finite(result[bad[0]]))
        return result

    def score_paths(self, paths: Iterable[str], transform: Callable | None = None) -> Iterator[ScoreResult]:
        """One `ScoreResult` per path, in order, yielded as each batch finishes.

        `transform` (optional) maps each opened RGB image to another (e.g. a JPEG re-encoding).
        With `workers` > 0, that many threads open and preprocess the next two batches' images
        while the model runs (decoding releases the GIL); with 0, everything runs in this thread."""
        paths = [os.fspath(p) for p in paths]
        if not paths:
            return
        size = self.batch_size
        if not self.workers:
            for batch in batches(paths, size):
                yield from self._results(batch, [self._prepare_path(p, transform) for p in batch])
            return
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="deepvrm-prepare")
        pending: collections.deque = collections.deque()
        upcoming = iter(paths)
        try:
            while True:
                # Keep the current batch and the next one in preparation.
                while len(pending) < 2 * size:
                    path = next(upcoming, None)
                    if path is None:
                        break
                    pending.append((path, pool.submit(self._prepare_path, path, transform)))
                if not pending:
                    break
                batch = [pending.popleft() for _ in range(min(size, len(pending)))]
                yield from self._results([p for p, _ in batch], [future.result() for _, future in batch])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _results(self, batch: list[str], prepared: list) -> Iterator[ScoreResult]:
        good = [i for i, item in enumerate(prepared) if not isinstance(item, str)]
        outcomes: list = list(prepared)
        if good:
            for i, value in zip(good, self._score_prepared([prepared[i] for i in good])):
                outcomes[i] = value
        for path, outcome in zip(batch, outcomes):
            if isinstance(outcome, str):
                yield ScoreResult(path, error=outcome, threshold=self.threshold)
            else:
                yield ScoreResult(path, score=outcome, threshold=self.threshold)


__all__ = ["COMPILE_MODES", "Detector", "ModelLoadError", "ScoreResult", "compile_mode", "compile_model", "compiled_regions",
           "raise_recompile_limit",
           "is_compiled", "load_classifier", "resolve_device", "resolve_dtype"]
