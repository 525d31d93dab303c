import json
from pathlib import Path

import pytest
import torch

from kinema.text import TextEncoder


def test_minilm_tokens_and_mask(text_encoder: TextEncoder) -> None:
    emb, mask = text_encoder.encode(["a red circle falls", "a blue square moves to the left quickly"])
    assert emb.shape[0] == 2 and emb.shape[2] == 384 == text_encoder.dim
    assert mask.dtype == torch.bool and mask[0].sum() < mask[1].sum()
    fixed, fmask = text_encoder.encode(["a red circle"], pad_to=32)
    assert fixed.shape == (1, 32, 384) and fmask.sum() < 32
    again, _ = text_encoder.encode(["a red circle"], pad_to=32)
    assert torch.equal(fixed, again)


def _tiny_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "</s>", "<unk>", "a", "red", "circle", "falls", "blue", "square"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "pad_token": "<pad>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": 64,
            }
        )
    )


@pytest.mark.parametrize("kind", ["t5", "umt5"])
def test_t5_family_loads_from_a_local_directory(tmp_path: Path, kind: str) -> None:
    import transformers

    cfg_cls = transformers.T5Config if kind == "t5" else transformers.UMT5Config
    model_cls = transformers.T5EncoderModel if kind == "t5" else transformers.UMT5EncoderModel
    cfg = cfg_cls(
        vocab_size=9,
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    model_cls(cfg).save_pretrained(tmp_path)
    _tiny_tokenizer(tmp_path)
    enc = TextEncoder.from_pretrained(tmp_path)
    assert enc.dim == 16
    emb, mask = enc.encode(["a red circle falls", "a blue square"])
    assert emb.shape == (2, 4, 16) and mask.tolist() == [[True] * 4, [True] * 3 + [False]]
    assert torch.equal(enc.encode(["a red circle falls"])[0], emb[:1])


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no text encoder"):
        TextEncoder.from_pretrained(tmp_path)


def test_packed_encoder_matches_the_full_one_on_its_captions(
    tmp_path: Path, text_encoder: TextEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pack_text_encoder keeps the corpus's word pieces: the same embeddings and masks on those texts
    (float32 copy: exactly), [UNK] for any other piece, and KINEMA_TEXT_ENCODER loads it as the default."""
    from kinema.text import ENV_TEXT_ENCODER, pack_text_encoder
    from kinema.train import caption_corpus

    texts = caption_corpus(40)
    kept = pack_text_encoder(tmp_path / "packed", texts, dtype=torch.float32)
    assert set(text_encoder.tokenizer.all_special_ids) <= set(kept) and 20 < len(kept) < 1000
    monkeypatch.setenv(ENV_TEXT_ENCODER, str(tmp_path / "packed"))
    small = TextEncoder.from_pretrained(max_length=128)
    assert small.name == text_encoder.name and small.model.config.vocab_size == len(kept)
    full_emb, full_mask = text_encoder.encode(texts, pad_to=128)
    emb, mask = small.encode(texts, pad_to=128)
    assert torch.equal(mask, full_mask)
    assert torch.allclose(emb, full_emb, atol=1e-5)
    ids = small.tokenizer("a red zeppelin")["input_ids"]
    assert small.tokenizer.convert_ids_to_tokens(ids)[1:-1] == ["a", "red", "[UNK]"]
    assert small.encode(["a red zeppelin"])[0].isfinite().all()


def test_pack_needs_a_wordpiece_tokenizer(tmp_path: Path) -> None:
    from kinema.text import pack_text_encoder

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    _tiny_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="WordPiece"):
        pack_text_encoder(tmp_path / "out", ["a red circle"], source=tmp_path)
    assert not (tmp_path / "out").exists()
