"""Which linear layers get LoRA, by name of the model part ("target"), as the recipes say.

Targets (names relative to the stock `*ForConditionalGeneration` / `DeepVRM*For*` of every backbone):

    language_model                  every linear of every decoder layer (q, k, v, o, gate, up, down;
                                    Qwen3.5's linear-attention layers: in_proj_qkv, in_proj_z,
                                    in_proj_b, in_proj_a, out_proj instead of q, k, v, o)
    language_model_from_injection   the same, for decoder layers injection_layer .. N-1 only
    visual_low_level                every linear of the low-level encoder that Deep-VRM uses: each
                                    block's qkv, proj and MLP (Qwen2.5-VL: gate_proj, up_proj,
                                    down_proj; Qwen3-VL/3.5: linear_fc1, linear_fc2), and the merger's
                                    (mlp.0 / mlp.2; linear_fc1 / linear_fc2). Qwen3-VL's DeepStack
                                    mergers are left out: the low-level tower's DeepStack features
                                    are never used, so LoRA there would train nothing
    visual                          the same for the semantic vision tower, DeepStack mergers
                                    included (they feed the decoder; not in the paper)

`lora_target_regex` turns targets into one regular expression for `LoraConfig(target_modules=...)`
(PEFT full-matches it against module names), and checks that it selects exactly every
`nn.Linear` inside those parts, so a model whose layers differ fails here, not silently later.

The gated fusion's per-channel `gate` (in `model.language_model.layers.K.fusion`) is not a linear
layer: it is trained in full and saved with the adapter through PEFT's `modules_to_save`
(`fusion_modules_to_save`), so an adapter-only folder holds it and `merge_and_unload` keeps it.
"""

from __future__ import annotations

import re

from torch import nn

TARGETS = ("language_model", "language_model_from_injection", "visual_low_level", "visual")

_LM_LINEARS = r"(self_attn\.(q|k|v|o)_proj|linear_attn\.(in_proj_(qkv|z|b|a)|out_proj)|mlp\.(gate|up|down)_proj)"
_TOWER_LINEARS = (r"(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.((gate|up|down)_proj|linear_fc(1|2)))"
                  r"|merger\.(mlp\.(0|2)|linear_fc(1|2)))")
_DEEPSTACK_LINEARS = r"deepstack_merger_list\.\d+\.linear_fc(1|2)"  # Qwen3-VL's semantic tower only


def _layer_indices(model, target: str) -> list[int]:
    config = model.config
    text_config = getattr(config, "text_config", config)
    n = text_config.num_hidden_layers
    if target == "language_model":
        return list(range(n))
    injection_layer = getattr(config, "injection_layer", None)
    if injection_layer is None:
        raise ValueError(f"LoRA target {target!r} needs a Deep-VRM model (its config has no injection_layer).")
    return list(range(injection_layer, n))


def _part(model, target: str) -> tuple[str, str, nn.Module]:
    """(name prefix, regex, scope predicate) of a target."""
    if target in ("language_model", "language_model_from_injection"):
        layers = "|".join(str(i) for i in _layer_indices(model, target))
        return "model.language_model.layers.", rf"model\.language_model\.layers\.({layers})\.{_LM_LINEARS}", layers
    if target == "visual_low_level":
        return f"model.{target}.", rf"model\.{target}\.{_TOWER_LINEARS}", None
    if target == "visual":
        return f"model.{target}.", rf"model\.{target}\.({_TOWER_LINEARS}|{_DEEPSTACK_LINEARS})", None
    raise ValueError(f"Unknown LoRA target {target!r}; choose from {TARGETS}.")


def lora_target_regex(model: nn.Module, targets: list[str] | tuple[str, ...]) -> str:
    """One regex selecting exactly every linear layer of the given targets (checked on `model`)."""
    if not targets:
        raise ValueError("No LoRA targets given.")
    linear_names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    patterns = []
    for target in targets:
        prefix, pattern, layers = _part(model, target)
        if not any(name.startswith(prefix) for name in linear_names):
            raise ValueError(f"LoRA target {target!r}: the model has no {prefix.rstrip('.')} (is it a Deep-VRM model?).")
        compiled = re.compile(pattern)
        selected = {n for n in linear_names if compiled.fullmatch(n)}
        if layers is not None:
            keep = set(layers.split("|"))
            expected = {n for n in linear_names if n.startswith(prefix) and n[len(prefix) :].split(".")[0] in keep}
        else:
            # (the low-level tower's DeepStack mergers are unused, so not expected)
            unused = ".deepstack_merger_list." if target == "visual_low_level" else None
            expected = {n for n in linear_names if n.startswith(prefix) and not (unused and unused in n)}
        if selected != expected:
            missed = sorted(expected - selected)[:5]
            raise ValueError(f"LoRA target {target!r} does not cover every linear layer of its part (missed: {missed}).")
        patterns.append(pattern)
    return "|".join(f"({p})" for p in patterns) if len(patterns) > 1 else patterns[0]


def fusion_modules_to_save(model: nn.Module) -> list[str]:
    """Full names of the fusion modules that hold parameters (only the gated fusion's, with its
    `gate`), for `LoraConfig(modules_to_save=...)`; empty for mean and add fusion."""
    from deepvrm.injection import ResidualFusion

    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, ResidualFusion) and any(True for _ in module.parameters(recurse=False))
    ]


def lora_config(model: nn.Module, targets, r: int, alpha: int, dropout: float = 0.0, **kwargs):
    """`LoraConfig` for `targets`; the gated fusion's gate, when the model has one, goes in
    `modules_to_save` (trained in full, saved with the adapter) unless `modules_to_save` is given."""
    from peft import LoraConfig

    kwargs.setdefault("modules_to_save", fusion_modules_to_save(model) or None)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_regex(model, targets),
        bias="none",
        **kwargs,
    )


def apply_lora(model: nn.Module, targets, r: int, alpha: int, dropout: float = 0.0, **config_kwargs):
    """Wrap `model` with LoRA on `targets`; everything else is frozen, except the gated fusion's gate
    (see `lora_config`). `config_kwargs` go to `LoraConfig`."""
    import warnings

    from peft import get_peft_model

    config = lora_config(model, targets, r, alpha, dropout, **config_kwargs)
    with warnings.catch_warnings():
        # PEFT reads transformers' deprecated `is_gradient_checkpointing` (a FutureWarning of
        # transformers 5 that no caller of ours can act on).
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


__all__ = ["TARGETS", "lora_target_regex", "fusion_modules_to_save", "lora_config", "apply_lora"]
