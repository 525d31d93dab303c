"""Low-rank adapters (Hu et al., 2021, "LoRA") on the DiT's attention and MLP linears.

    kinema train --data runs/footage --vae shipped --init shipped --lora 8 --out runs/ft --steps 500
    kinema generate "a horse runs" --lora runs/ft            # the shipped model plus the adapter

`add_lora` wraps each targeted nn.Linear as W x + (alpha / r) B A x with A random and B zero, so training
starts exactly at the base model; only A and B train. A run folder keeps both a merged `dit.safetensors`
(a complete model: `--model runs/ft`) and the adapter alone in `lora.safetensors` + `lora.json`
(`--lora runs/ft` applies it to the base model it names, merged into the weights at load time).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

# every linear inside a DiT block: self-attention qkv/proj, cross-attention q/kv/proj, MLP in/out
TARGETS = ("attn.qkv", "attn.proj", "cross.q", "cross.kv", "cross.proj", "mlp.0", "mlp.2")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.register_buffer("lora_scale", torch.tensor(alpha / rank))  # kept in the state dict
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: Tensor) -> Tensor:  # (..., in) -> (..., out)
        return self.base(x) + (x @ self.lora_a.t().to(x.dtype)) @ (self.lora_scale * self.lora_b.t()).to(x.dtype)


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: tuple[str, ...] = TARGETS) -> int:
    """Freeze model and wrap the targeted linears of every block in place; returns how many were wrapped."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    model.requires_grad_(False)
    n = 0
    for block in model.blocks:
        for name in targets:
            parent_name, _, child = name.rpartition(".")
            parent = block.get_submodule(parent_name)
            setattr(parent, child, LoRALinear(parent.get_submodule(child), rank, alpha or float(rank)))
            n += 1
    return n


def merged_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A LoRA model's state dict as the plain DiT's: W + scale B A under the original parameter names."""
    out = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        if ".base." not in key:
            out[key] = value
            continue
        prefix, _, leaf = key.partition(".base.")
        if leaf == "weight":
            a, b = state[f"{prefix}.lora_a"].float(), state[f"{prefix}.lora_b"].float()
            value = (value.float() + float(state[f"{prefix}.lora_scale"]) * b @ a).to(value.dtype)
        out[f"{prefix}.{leaf}"] = value
    return out


def adapter_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Only the adapter tensors (A, B and their scale), under the DiT's module names."""
    return {k: v for k, v in state.items() if ".lora_" in k}


def apply_adapter(dit: nn.Module, folder: Path) -> None:
    """Merge the adapter in folder/lora.safetensors into a plain DiT's weights (in place)."""
    from safetensors.torch import load_file

    from kinema.checkpoint import CheckpointError

    path = Path(folder) / "lora.safetensors"
    if not path.is_file():
        raise CheckpointError(f"missing LoRA adapter {path}")
    adapter = load_file(path)
    own = dit.state_dict()
    with torch.no_grad():
        for key in adapter:
            if not key.endswith(".lora_a"):
                continue
            prefix = key[: -len(".lora_a")]
            if f"{prefix}.weight" not in own:
                raise CheckpointError(f"LoRA adapter {path} does not match the model: no {prefix}.weight")
            w = own[f"{prefix}.weight"]
            delta = float(adapter[f"{prefix}.lora_scale"]) * adapter[f"{prefix}.lora_b"].float() @ adapter[key].float()
            if delta.shape != w.shape:
                raise CheckpointError(f"LoRA adapter {path} does not match the model at {prefix}")
            w.add_(delta.to(w.dtype))
