"""Shared vision tower: the low-level encoder as `visual` plus a LoRA delta, without a second copy.

Stage 2 trains the low-level encoder as a frozen copy of `visual` plus LoRA on its linear layers,
so after training `W_low = W_visual + B @ A` for those layers and every other low-level weight
still equals `visual`'s. This mode keeps only `visual` and the `(A, B)` pairs
(`model.visual_low_level_lora.<path in visual>.lora_A` / `.lora_B`): the low-level pass runs `visual`
with the deltas switched on. For the 7B model it drops ~0.68B parameters (~1.3 GB in bf16).

Both forms convert exactly into each other:
- `separate -> shared` (`to_shared`): each delta `W_low - W_visual` is factorised by SVD at its
  rank (exact up to float round-off when the rank is at most the LoRA rank); it refuses when the
  towers differ outside the LoRA targets (then the model was not trained as Deep-VRM's stage 2).
- `shared -> separate` (`to_separate`): the deltas are merged into a copy of `visual`, which gives
  the official checkpoint layout (`visual_low_level.*`).
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

# The stage-2 recipe's LoRA targets in a vision tower: Qwen2.5-VL's block MLP (gate/up/down_proj) and
# merger (mlp.0/mlp.2), Qwen3-VL's and Qwen3.5's (linear_fc1/linear_fc2 in both). Qwen3-VL's DeepStack
# mergers (`deepstack_merger_list.N.linear_fc1`) do not match: the low-level tower's are unused.
LORA_TARGET_SUFFIXES = ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "mlp.linear_fc1",
                        "mlp.linear_fc2", "merger.mlp.0", "merger.mlp.2", "merger.linear_fc1", "merger.linear_fc2")  # fmt: skip


def lora_target_names(tower: nn.Module) -> list[str]:
    return [name for name, module in tower.named_modules()
            if isinstance(module, nn.Linear) and name.endswith(LORA_TARGET_SUFFIXES)]


class LoRADelta(nn.Module):
    """`delta(x) = x @ A.T @ B.T`; B starts at zero so a fresh delta changes nothing."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        # Plain parameters (not nn.Linear) so generic Linear initialisation never touches them.
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        self.active = False

    def forward(self, x):
        return x @ self.lora_A.T @ self.lora_B.T

    @property
    def delta_weight(self) -> torch.Tensor:
        return self.lora_B @ self.lora_A


class LoRATargetLinear(nn.Linear):
    """A vision-tower linear layer that adds its low-level delta while the delta is active.
    Same parameters and names as `nn.Linear`; the delta lives in the `visual_low_level_lora` tree."""

    def forward(self, x):
        out = super().forward(x)
        delta = self.__dict__.get("_low_level_delta")
        if delta is not None and delta.active:
            out = out + delta(x.to(delta.lora_A.dtype)).to(out.dtype)
        return out


def build_lora_tree(tower: nn.Module, rank: int) -> nn.Module:
    """A module tree mirroring `tower`'s paths to its LoRA targets, holding one `LoRADelta` each."""
    root = nn.Module()
    for name in lora_target_names(tower):
        linear = tower.get_submodule(name)
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, LoRADelta(linear.in_features, linear.out_features, rank))
    return root


def attach(tower: nn.Module, lora_tree: nn.Module) -> None:
    """Point each target linear of `tower` at its delta (a plain attribute, not a submodule, so
    `visual`'s parameter names stay the stock ones)."""
    for name in lora_target_names(tower):
        linear = tower.get_submodule(name)
        linear.__class__ = LoRATargetLinear
        linear.__dict__["_low_level_delta"] = lora_tree.get_submodule(name)


def detach(tower: nn.Module) -> None:
    for module in tower.modules():
        if isinstance(module, LoRATargetLinear):
            module.__dict__.pop("_low_level_delta", None)
            module.__class__ = nn.Linear


@contextlib.contextmanager
def low_level_active(lora_tree: nn.Module):
    """Within this block `visual` computes the low-level encoder."""
    deltas = [m for m in lora_tree.modules() if isinstance(m, LoRADelta)]
    for delta in deltas:
        delta.active = True
    try:
        yield
    finally:
        for delta in deltas:
            delta.active = False


@torch.no_grad()
def factorise_low_level_tower(visual: nn.Module, low_level: nn.Module, rank: int | None = None,
                              rtol: float | None = None) -> tuple[int, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """`(rank, {target: (A, B)})` with `B @ A == W_low - W_visual` for every target.

    `rank=None` uses the largest numerical rank of the deltas (at least 1). `rtol` bounds the
    factorisation residual relative to the weights' magnitude; by default it is the round-off of
    the tower's dtype (stored bf16 weights carry full-rank rounding noise of about 2**-8).
    """
    if rtol is None:
        rtol = max(1e-5, 2 * torch.finfo(visual.dtype).eps)
    targets = set(lora_target_names(visual))
    low_params = dict(low_level.named_parameters())
    for name, param in visual.named_parameters():
        module = name.rsplit(".", 1)[0]
        if module in targets and name.endswith(".weight"):
            continue
        if not torch.equal(param, low_params[name]):
            raise ValueError(
                f"The towers differ at {name}, which LoRA does not train: this low-level encoder cannot "
                "share the vision tower's weights (keep the separate-tower layout)."
            )
    deltas = {}
    for name in sorted(targets):
        w_visual = visual.get_submodule(name).weight.float()
        deltas[name] = low_level.get_submodule(name).weight.float() - w_visual
    svds = {name: torch.linalg.svd(delta, full_matrices=False) for name, delta in deltas.items()}
    if rank is None:
        ranks = []
        for name, (_, s, _) in svds.items():
            scale = max(float(s[0]) if s.numel() else 0.0, float(visual.get_submodule(name).weight.abs().max()))
            ranks.append(int((s > scale * rtol).sum()))
        rank = max(1, max(ranks, default=1))
    factors = {}
    for name, (u, s, vh) in svds.items():
        root = s[:rank].sqrt()
        b, a = u[:, :rank] * root, root[:, None] * vh[:rank]
        if a.shape[0] < rank:  # a tiny layer whose full rank is below the LoRA rank
            a = torch.cat([a, a.new_zeros(rank - a.shape[0], a.shape[1])])
            b = torch.cat([b, b.new_zeros(b.shape[0], rank - b.shape[1])], dim=1)
        error = (b @ a - deltas[name]).abs().max()
        bound = rtol * max(1.0, float(deltas[name].abs().max()), float(visual.get_submodule(name).weight.abs().max()))
        if error > bound:
            raise ValueError(f"The low-level delta of {name} has rank above {rank} (residual {error:.2e}); "
                             "pass a larger rank or keep the separate-tower layout.")
        factors[name] = (a, b)
    return rank, factors


@torch.no_grad()
def merged_low_level_tower(visual: nn.Module, lora_tree: nn.Module) -> nn.Module:
    """A separate low-level tower: a copy of `visual` with every delta merged into its weight."""
    tower = copy.deepcopy(visual)
    detach(tower)
    for name in lora_target_names(tower):
        delta = lora_tree.get_submodule(name).delta_weight
        linear = tower.get_submodule(name)
        linear.weight.add_(delta.to(linear.weight.dtype))
    return tower
