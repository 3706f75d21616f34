"""GPU check at the paper's scale: the Qwen2.5-VL-7B shape (or another preset: `--preset qwen3-vl-8b`,
`--preset qwen3.5-9b`) with random weights (bf16 on a GPU), 512x512 images.

Measures, on one GPU, for each batch size (1, 8, 16, 32, 64):

- Deep-VRM classification (images/s, latency), the plain base forward on the same prompt (the
  floor), each vision tower alone (`visual`, `visual_low_level`; ideal = base + one tower) and the
  decoder alone (the classification forward with both towers' outputs given: prompt, M-RoPE
  positions, the decoder layers with the injection, the answer rows);
- utilisation: the FLOPs of each part (counted with `torch.utils.flop_counter.FlopCounterMode` on
  the very call that is timed; for Qwen2.5-VL also from the formula in `analytic_flops`, which
  the counts must match), the achieved TFLOP/s, and that as a share of the machine's matmul
  ceiling (the best of a few large square GEMMs in the model's dtype, `matmul_ceiling`);
- with `--compile`: the same parts with the blocks compiled (`deepvrm.inference.detector.compile_model`,
  what `Detector(compile=True)` does), the first call's seconds (the compilation), and P(fake)
  of the compiled model against the eager one on the same images, beside the spread that batching
  alone gives the eager model (the same images scored in batches of other sizes: bf16 round-off);

then the stock transformers vision modules for comparison (Qwen2.5-VL), and the weight memory of
the separate and the shared vision-tower forms. Writes a JSON report after every step (a run cut
short keeps what it measured). Run through gpu_check.sh (installs nothing from the network).

FLOPs are those of matrix products (2 per multiply-add: linear layers, attention's QK^T and AV,
the patch embedding), as usual for utilisation; elementwise work is not counted. The attention of
the causal decoder is counted dense, as FlopCounterMode counts it (a causal kernel skips about
half of it: under 1% of the decoder's FLOPs at ~300 tokens).

On a CPU (`--device cpu --preset small`, float32) the same script is a smoke test, and measures
what compilation gives there.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds of `repeats` calls, seconds of the warm-up call before them)."""
    start = time.perf_counter()
    fn()
    _sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], first


def matmul_ceiling(device: torch.device, dtype: torch.dtype, sizes=None, repeats: int = 10) -> dict:
    """The machine's matmul ceiling in `dtype`: TFLOP/s of square GEMMs (n x n @ n x n, 2 n^3 FLOPs),
    the best over `sizes`."""
    sizes = sizes or ((4096, 8192, 16384) if device.type == "cuda" else (512, 1024, 2048))
    results = {}
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        seconds, _ = timed(lambda: torch.mm(a, b), repeats)
        results[str(n)] = 2 * n**3 / seconds / 1e12
        del a, b
    return {"tflops": max(results.values()), "by_size": results, "dtype": str(dtype).removeprefix("torch.")}


def _cpu_flash_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn) -> int:
    """Matmul FLOPs of one call of `fn` (FlopCounterMode; its CPU sdpa kernel is not in torch's
    table, so it is counted with torch's own sdpa formula, as the CUDA kernels are)."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {}
    cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None:
        mapping[cpu_flash] = _cpu_flash_sdpa_flops
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


def analytic_flops(config, grid_side: int, batch_size: int, prompt_length: int) -> dict | None:
    """Matmul FLOPs of the Qwen2.5-VL parts from the config and token counts (None for another backbone).

    One image of N = grid_side^2 patches through a vision tower (hidden d, MLP width I, depth L,
    patch vector P = 3*T*p*p, merge unit m = 4, output width o):
        patch embedding       2 N P d
        per block, linears    2 N (3d^2 [qkv] + d^2 [proj] + 3 d I [gate, up, down])
        per block, attention  4 d sum_s len_s^2 over its attention segments (QK^T and AV): the
                              windows of get_vision_window_index, or the whole image in the
                              full-attention blocks (`fullatt_block_indexes`)
        merger                2 (N/m) (m d)^2 + 2 (N/m) (m d) o
    One prompt of T tokens through the decoder (hidden H, MLP width J, layers K, query heads q,
    key/value heads k, head width h):
        per layer             2 T H (q h + 2 k h) [q, k, v] + 2 T q h H [o] + 6 T H J [MLP]
                              + 4 T^2 q h [attention, dense]
        answer rows           2 H * 2 (the last position against the two answer tokens' LM-head rows)
    The whole Deep-VRM = 2 towers + decoder; the base = 1 tower + decoder (minus the answer rows,
    plus its 1-position LM head, 2 H V). This is the full forward of every prompt position
    (`classification_savings = False`); the classification path's savings (the prompt prefix
    computed once, the last layer at the answer position only) make the counted decoder smaller."""
    if config.backbone != "qwen2_5_vl":
        return None
    from transformers.vision_utils import get_vision_window_index

    v, t = config.vision_config, config.text_config
    n = grid_side * grid_side
    d, inner, depth = v.hidden_size, v.intermediate_size, v.depth
    patch = 3 * v.temporal_patch_size * v.patch_size**2
    m = v.spatial_merge_size**2
    _, cu_windows = get_vision_window_index(
        torch.tensor([[1, grid_side, grid_side]]), v.spatial_merge_size, v.window_size, v.patch_size
    )
    window_lengths = (cu_windows[1:] - cu_windows[:-1]).tolist()
    full_blocks = len([i for i in v.fullatt_block_indexes if i < depth])
    attention = 4 * d * (full_blocks * n * n + (depth - full_blocks) * sum(x * x for x in window_lengths))
    tower = (2 * n * patch * d + depth * 2 * n * (4 * d * d + 3 * d * inner) + attention
             + 2 * (n // m) * (m * d) ** 2 + 2 * (n // m) * (m * d) * v.out_hidden_size)
    hidden, width, layers = t.hidden_size, t.intermediate_size, t.num_hidden_layers
    heads, kv_heads = t.num_attention_heads, t.num_key_value_heads
    head_dim = getattr(t, "head_dim", None) or hidden // heads
    T = prompt_length
    layer = (2 * T * hidden * (heads * head_dim + 2 * kv_heads * head_dim) + 2 * T * heads * head_dim * hidden
             + 6 * T * hidden * width + 4 * T * T * heads * head_dim)
    decoder_body = layers * layer
    decoder = batch_size * (decoder_body + 2 * hidden * 2)
    return {
        "tower": batch_size * tower,
        "decoder": decoder,
        "deepvrm": 2 * batch_size * tower + decoder,
        "base": batch_size * (tower + decoder_body + 2 * hidden * t.vocab_size),
    }


@contextlib.contextmanager
def given_image_features(model, features):
    """The classification forward with both towers' outputs given: `get_image_features` returns
    `features` (computed before), so only the decoder side runs."""
    inner = model.model
    inner.get_image_features = lambda *args, **kwargs: features
    try:
        yield
    finally:
        del inner.get_image_features


def compiled_pass(args, model, report, batch_sizes, steps, eager_scores, utilisation, print_row, write, t0, on_gpu):
    """The parts again with the model compiled as `Detector(compile=True)` compiles it. Largest batch
    first: it is compiled for that shape (static kernels, as a long run at a fixed batch size gets
    them), the next size recompiles once with symbolic sizes (the Detector's `dynamic=None`)."""
    from deepvrm.inference.detector import compile_model, raise_recompile_limit

    dynamic = {"auto": None, "static": False, "dynamic": True}[args.compile_dynamic]
    if dynamic is False:  # one compilation per batch size: let them all in
        raise_recompile_limit(8 * len(batch_sizes))
    compile_model(model, args.compile_mode, dynamic=dynamic)
    report["compiled"] = {"mode": args.compile_mode, "dynamic": args.compile_dynamic, "runs": {}}
    for batch_size in sorted(batch_sizes, reverse=True):
        if time.time() - t0 > 0.9 * args.time_budget or batch_size not in eager_scores:
            report["compiled"]["runs"][str(batch_size)] = "skipped: time budget"
            continue
        parts, p_fake = steps(batch_size, with_base=False)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        row, first = {}, {}
        for name, fn in parts.items():
            row[name], first[name] = timed(fn, args.repeats)
        row["first_call_seconds"] = first  # the first call of a new shape compiles
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
        row["images_per_second"] = batch_size / row["deepvrm"]
        row["speedup"] = {k: report["runs"][str(batch_size)][k] / row[k] for k in parts}
        row["utilisation"] = utilisation(row, report["flops"][str(batch_size)]["counted"])
        row["p_fake_max_abs_difference_vs_eager"] = float((p_fake() - eager_scores[batch_size]).abs().max())
        report["compiled"]["runs"][str(batch_size)] = row
        print_row(batch_size, row, compiled=True)
        print("           speedup " + "  ".join(f"{k} x{v:.2f}" for k, v in row["speedup"].items())
              + f"; first calls {sum(first.values()):.1f} s; max |dP(fake)| vs eager "
              + f"{row['p_fake_max_abs_difference_vs_eager']:.2e}", flush=True)
        write()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="qwen2.5-vl-7b")
    parser.add_argument("--batch-sizes", default="1,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="gpu_check.json")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (e.g. --preset small)")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--compile", action="store_true", help="also time the compiled model (Detector(compile=True))")
    parser.add_argument("--compile-mode", default="default", help="torch.compile mode for --compile")
    parser.add_argument("--compile-dynamic", choices=("auto", "static", "dynamic"), default="auto",
                        help="torch.compile's dynamic=None/False/True (auto: what the Detector uses)")
    parser.add_argument("--time-budget", type=float, default=400.0,
                        help="seconds; past it larger batches are skipped (with --compile the eager pass stops at 40%% of it)")
    args = parser.parse_args()

    from _common import base_model_sharing_weights
    from transformers.models.qwen2_5_vl import modeling_qwen2_5_vl as stock

    from deepvrm import deepvrm_class
    from deepvrm.configuration import preset_config
    from deepvrm.fast_vision import use_fast_vision_modules
    from deepvrm.inference.detector import compile_model
    from deepvrm.shared_tower import lora_target_names

    t0 = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"auto": torch.bfloat16 if device.type == "cuda" else torch.float32, "bfloat16": torch.bfloat16,
             "float32": torch.float32, "float16": torch.float16}[args.dtype]
    on_gpu = device.type == "cuda"
    memory = torch.cuda.memory_allocated if on_gpu else (lambda: 0)
    prefix, suffix = list(range(100, 130)), list(range(130, 136))
    config = preset_config(
        args.preset,
        # Prompt ids normally come from Qwen's tokenizer; timing depends only on their number
        # (the paper's prompt is ~40 tokens around the 256 image tokens).
        prompt_prefix_ids=prefix, prompt_suffix_ids=suffix, answer_token_ids=[1, 2],
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    torch.set_default_dtype(dtype)
    with device:
        model = deepvrm_class(config.backbone, "classification")(config).eval()
    torch.set_default_dtype(torch.float32)
    _sync()
    build_seconds = time.time() - t0
    separate_weights = memory() / 2**30
    base = base_model_sharing_weights(model)

    unit = config.vision_config.patch_size * config.vision_config.spatial_merge_size
    # 512x512 -> 36x36 patches of 14 (Qwen2.5-VL) or 32x32 of 16 (Qwen3-VL, Qwen3.5), as smart_resize
    # gives it; the model's own budget for small presets.
    grid_side = int(config.max_pixels**0.5) // unit * unit // config.vision_config.patch_size
    image_side = grid_side * config.vision_config.patch_size
    patch_dim = 3 * config.vision_config.temporal_patch_size * config.vision_config.patch_size**2
    patches = grid_side * grid_side
    prompt_length = len(prefix) + patches // config.vision_config.spatial_merge_size**2 + len(suffix)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    # One set of images; a batch of b takes the first b (so batches of other sizes score the same images).
    generator = torch.Generator().manual_seed(1)
    all_pixels = torch.randn(max(batch_sizes) * patches, patch_dim, generator=generator).to(device, dtype)

    report = {
        "device": torch.cuda.get_device_name() if on_gpu else "cpu", "torch": torch.__version__, "preset": args.preset,
        "backbone": config.backbone, "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
        "image_size": f"{image_side}x{image_side}", "image_tokens": patches // config.vision_config.spatial_merge_size**2,
        "prompt_tokens": prompt_length, "parameters": sum(p.numel() for p in model.parameters()),
        "build_seconds": build_seconds, "weights_gib_separate_tower": separate_weights,
    }

    def write():
        report["total_seconds"] = time.time() - t0
        Path(args.json).write_text(json.dumps(report, indent=2))

    ceiling = matmul_ceiling(device, dtype)
    report["matmul_ceiling"] = ceiling
    print(f"{report['device']}, {args.preset}, {report['dtype']}, {report['image_size']} images, "
          f"{prompt_length} prompt tokens; matmul ceiling {ceiling['tflops']:.2f} TFLOP/s "
          f"({', '.join(f'{n}: {v:.2f}' for n, v in ceiling['by_size'].items())})", flush=True)
    write()

    def inputs(batch_size):
        grid = torch.tensor([[1, grid_side, grid_side]] * batch_size, device=device)
        return all_pixels[: batch_size * patches], grid

    def steps(batch_size, with_base: bool):
        """name -> one call of that part, for a batch; and the P(fake) function."""
        pixels, grid = inputs(batch_size)
        inner = model.model
        plan = inner.vision_plan(grid)
        with torch.inference_mode():
            features = inner.get_image_features(pixels, grid, return_dict=True)

        @torch.inference_mode()
        def deepvrm_step():
            return model(pixel_values=pixels, image_grid_thw=grid).logits

        @torch.inference_mode()
        def semantic_tower_step():
            inner.visual(pixels, grid_thw=grid, **plan)

        @torch.inference_mode()
        def low_level_tower_step():
            inner.visual_low_level(pixels, grid_thw=grid, **plan)

        @torch.inference_mode()
        def decoder_step():
            with given_image_features(model, features):
                model(pixel_values=pixels, image_grid_thw=grid)

        parts = {"deepvrm": deepvrm_step, "semantic_tower": semantic_tower_step,
                 "tower": low_level_tower_step, "decoder": decoder_step}
        if with_base:
            input_ids, mask = model.build_prompt_inputs(grid)

            @torch.inference_mode()
            def base_step():
                base(input_ids=input_ids, attention_mask=mask, pixel_values=pixels, image_grid_thw=grid, logits_to_keep=1,
                     mm_token_type_ids=(input_ids == config.image_token_id).int())

            parts["base"] = base_step
        return parts, lambda: deepvrm_step().float().softmax(-1)[:, 1].cpu()

    def utilisation(row, flops):
        out = {}
        for part, count in flops.items():
            if part in row:
                achieved = count / row[part] / 1e12
                out[part] = {"tflops": achieved, "share_of_ceiling": achieved / ceiling["tflops"]}
        return out

    def print_row(batch_size, row, compiled=False):
        u = row["utilisation"]
        print(f"batch {batch_size:>3}{' compiled' if compiled else ''}: {row['images_per_second']:8.1f} img/s  "
              f"deepvrm {row['deepvrm']*1000:8.1f} ms"
              + (f"  base {row['base']*1000:8.1f} ms" if "base" in row else "")
              + f"  towers {row['semantic_tower']*1000:7.1f} / {row['tower']*1000:7.1f} ms  decoder {row['decoder']*1000:7.1f} ms"
              + (f"  vs ideal x{row['time_over_ideal']:.3f}" if "time_over_ideal" in row else ""), flush=True)
        print("           TFLOP/s (share of ceiling): " + "  ".join(
            f"{part} {u[part]['tflops']:.2f} ({100*u[part]['share_of_ceiling']:.0f}%)"
            for part in ("deepvrm", "semantic_tower", "tower", "decoder", "base") if part in u), flush=True)

    # ---------------------------------------------------------------- eager
    eager_budget = args.time_budget * (0.4 if args.compile else 1.0)
    report["runs"], report["flops"] = {}, {}
    eager_scores: dict[int, torch.Tensor] = {}
    # One call first: what the classification path computes once and keeps (the prompt prefix's
    # keys/values) is then not in any batch's count or time, as in a long run.
    steps(min(batch_sizes), with_base=False)[0]["deepvrm"]()
    for batch_size in batch_sizes:
        if time.time() - t0 > eager_budget:
            report["runs"][str(batch_size)] = "skipped: time budget"
            continue
        parts, p_fake = steps(batch_size, with_base=True)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        counted = {name: count_flops(fn) for name, fn in parts.items()}
        analytic = analytic_flops(config, grid_side, batch_size, prompt_length)
        report["flops"][str(batch_size)] = {"counted": counted, "analytic": analytic}
        row = {}
        for name, fn in parts.items():
            row[name], _ = timed(fn, args.repeats)
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if on_gpu else None
        row["images_per_second"] = batch_size / row["deepvrm"]
        row["overhead_vs_base"] = row["deepvrm"] / row["base"]
        row["time_over_ideal"] = row["deepvrm"] / (row["base"] + row["tower"])
        row["utilisation"] = utilisation(row, counted)
        eager_scores[batch_size] = p_fake()
        report["runs"][str(batch_size)] = row
        print_row(batch_size, row)
        write()
    if report["flops"]:
        last = report["flops"][max(report["flops"], key=int)]
        if last["analytic"] is not None:
            ratios = {k: last["counted"][k] / last["analytic"][k] for k in ("tower", "decoder", "deepvrm", "base")}
            report["flops_counted_over_analytic"] = ratios
            print("FLOPs counted / analytic (decoder and deepvrm: over the full forward of every position): "
                  + ", ".join(f"{k} {v:.4f}" for k, v in ratios.items()), flush=True)
    # What batching alone does to the eager model's P(fake): the same images in batches of other sizes.
    spread = 0.0
    for small in eager_scores:
        for large in eager_scores:
            if small < large:
                spread = max(spread, float((eager_scores[large][:small] - eager_scores[small]).abs().max()))
    report["p_fake_eager_batching_spread"] = spread

    # ---------------------------------------------------------------- the stock vision modules
    # (one attention call per window), at one batch size (Qwen2.5-VL only: the other backbones run
    # their stock vision modules anyway).
    if time.time() - t0 < eager_budget and config.backbone == "qwen2_5_vl":
        pixels, grid = inputs(min(8, max(batch_sizes)))
        tower = model.model.visual_low_level
        tower.patch_embed.__class__ = stock.Qwen2_5_VisionPatchEmbed
        for block in tower.blocks:
            block.attn.__class__ = stock.Qwen2_5_VLVisionAttention
        with torch.inference_mode():
            slow, _ = timed(lambda: tower(pixels, grid_thw=grid), args.repeats)
            use_fast_vision_modules(tower)
            fast, _ = timed(lambda: tower(pixels, grid_thw=grid), args.repeats)
        del tower  # a live reference would keep the tower's weights after sharing
        report["vision_tower_batch8"] = {"fast_seconds": fast, "stock_seconds": slow, "speedup": slow / fast}
        print(f"vision tower, batch {len(grid)}: ours {fast*1000:.1f} ms, stock {slow*1000:.1f} ms (x{slow/fast:.2f})", flush=True)
        write()

    # ---------------------------------------------------------------- compiled
    if args.compile:
        try:
            compiled_pass(args, model, report, batch_sizes, steps, eager_scores, utilisation, print_row, write, t0, on_gpu)
        except Exception as error:  # e.g. no C compiler for Triton's launcher: keep the eager results
            report.setdefault("compiled", {})["error"] = f"{type(error).__name__}: {error}"[:2000]
            print(f"compiled pass failed: {report['compiled']['error'][:500]}", flush=True)
            write()
        compile_model(model, False)
        print(f"P(fake): eager batching spread (round-off) {spread:.2e}", flush=True)

    # ---------------------------------------------------------------- shared tower
    # The low-level encoder as visual + LoRA deltas (rank 64, as stage 2 trains it).
    del base
    with torch.no_grad():
        for name in lora_target_names(model.model.visual_low_level):
            module = model.model.visual_low_level.get_submodule(name)
            a = torch.randn(64, module.in_features, device=device, dtype=torch.float32) * 0.01
            b = torch.randn(module.out_features, 64, device=device, dtype=torch.float32) * 0.01
            module.weight.copy_(model.model.visual.get_submodule(name).weight.float().add(b @ a))
    pixels, grid = inputs(min(4, max(batch_sizes)))
    with torch.inference_mode():
        separate_scores = model(pixel_values=pixels, image_grid_thw=grid).logits.float().softmax(-1)
    t_share = time.time()
    model.share_vision_tower(rank=64)
    gc.collect()
    share_seconds = time.time() - t_share
    if on_gpu:
        torch.cuda.empty_cache()
    shared_weights = memory() / 2**30
    with torch.inference_mode():
        shared_scores = model(pixel_values=pixels, image_grid_thw=grid).logits.float().softmax(-1)
    report["shared_tower"] = {
        "weights_gib_separate": separate_weights, "weights_gib_shared": shared_weights,
        "saving_gib": separate_weights - shared_weights, "convert_seconds": share_seconds,
        "max_abs_p_fake_difference": float((shared_scores - separate_scores).abs().max()),
    }
    print(f"shared tower: weights {separate_weights:.2f} -> {shared_weights:.2f} GiB, "
          f"max |dP| {report['shared_tower']['max_abs_p_fake_difference']:.2e}", flush=True)
    write()
    print(f"wrote {args.json} in {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
