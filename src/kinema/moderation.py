"""Prompt moderation: a usage policy of named categories, checked before any model work.

Two signals, either of which flags a category:

1. A linear head per category on the mean-pooled, L2-normalised MiniLM embedding of the normalised prompt
   (the encoder the pipeline already holds, so a check costs one short encode). Trained on the labelled
   prompts in assets/moderation/prompts.jsonl (split "train") plus procedural-world captions as benign
   examples; the "test" split is never trained on (benchmarks/moderation.py scores it).
2. Curated lists in assets/moderation/lexicon.json (public figures; franchises, characters, brands; hate
   symbols; explicit, self-harm and mass-casualty terms, a few in other languages) matched as whole words
   after `normalise` undoes case, accents, look-alike letters, leetspeak and spaced or dotted letters.
   Embeddings miss names (a nearest-exemplar test missed a politician and a superhero), lists do not.

A prompt flagged sexual that also names a minor is flagged sexual_minors as well.

Retrain the head (seconds on a CPU) and score the held-out split:

    python -m kinema.moderation train          # writes assets/moderation/head.{safetensors,json}
    python benchmarks/moderation.py            # precision / recall per category on the test split
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from kinema.conditioning import KinemaError
from kinema.text import TextEncoder

CATEGORIES: tuple[str, ...] = (
    "sexual",
    "sexual_minors",
    "violence_gore",
    "hate",
    "self_harm",
    "real_people",
    "ip",
    "weapons",
)
DESCRIPTIONS: dict[str, str] = {
    "sexual": "sexual content or nudity",
    "sexual_minors": "sexual content involving minors",
    "violence_gore": "graphic violence or gore",
    "hate": "hateful content or hate symbols",
    "self_harm": "suicide or self-harm",
    "real_people": "a real person's likeness",
    "ip": "others' characters, franchises or trademarks",
    "weapons": "weapons or mass-casualty harm",
}
ASSETS = Path(__file__).parent / "assets" / "moderation"
ENCODER_NAME = "all-MiniLM-L6-v2"


class PolicyError(KinemaError):
    """A prompt the usage policy refuses; `categories` names why (the CLI exits with code 3)."""

    def __init__(self, categories: list[str], which: str = "prompt") -> None:
        self.categories = list(categories)
        named = ", ".join(f"{c} ({DESCRIPTIONS[c]})" for c in self.categories)
        super().__init__(f"{which} refused by the usage policy: {named}")


@dataclass
class Verdict:
    allowed: bool
    categories: list[str]
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"allowed": self.allowed, "categories": self.categories, "scores": self.scores}


# ---------------------------------------------------------------------------------------------- normalise

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_HOMOGLYPHS = str.maketrans("аеорсхуіјѕ", "aeopcxyijs")  # Cyrillic letters that look Latin
_NUMBER_WORD = re.compile(r"^\d+[a-z]{0,3}$")  # 13, 3d, 12yo, 4k: numbers stay numbers


def _unleet(token: str) -> str:
    token = token.strip(".,!?;:'\"()[]")  # sentence punctuation is not leetspeak ("runs!")
    if _NUMBER_WORD.match(token) or not re.search(r"[a-z]", token):
        return token
    return token.translate(_LEET)


def normalise(text: str) -> str:
    """Lower-case ASCII words separated by single spaces: accents and look-alike letters folded, leetspeak
    inside words undone ('n4k3d' -> 'naked', numbers kept), punctuation to spaces, and runs of three or
    more single letters joined ('t r u m p', 't.r.u.m.p' -> 'trump')."""
    text = unicodedata.normalize("NFKD", text.lower().translate(_HOMOGLYPHS))
    text = "".join(c for c in text if not unicodedata.combining(c))
    tokens = [_unleet(t) for t in text.split()]
    words = re.sub(r"[^a-z0-9]+", " ", " ".join(tokens)).split()
    out: list[str] = []
    run: list[str] = []
    for w in [*words, ""]:
        if len(w) == 1:
            run.append(w)
            continue
        if len(run) >= 4 and run[0] in ("a", "i"):  # "a s e x" is "a sex": keep the article apart
            out.append(run.pop(0))
        out.extend(["".join(run)] if len(run) >= 3 else run)
        run = []
        if w:
            out.append(w)
    return " ".join(out)


# ---------------------------------------------------------------------------------------------- lexicon


class Lexicon:
    """Whole-word phrase lists per category; phrases of 8+ letters also match with the spaces removed."""

    SQUASH_MIN = 8

    def __init__(self, lists: dict[str, list[str]], allow: dict[str, list[str]], minors: list[str]) -> None:
        self.patterns = {c: self._compile(words) for c, words in lists.items()}
        self.squashed = {
            c: sorted({p for p in (normalise(w).replace(" ", "") for w in words) if len(p) >= self.SQUASH_MIN})
            for c, words in lists.items()
        }
        self.allow = {c: self._compile(words) for c, words in allow.items()}
        self.minors = self._compile(minors)

    @staticmethod
    def _compile(words: list[str]) -> re.Pattern:
        phrases = sorted({normalise(w) for w in words if normalise(w)}, key=len, reverse=True)
        return re.compile(r"(?<![a-z0-9])(?:" + "|".join(map(re.escape, phrases)) + r")(?![a-z0-9])")

    @classmethod
    def load(cls, path: Path = ASSETS / "lexicon.json") -> Lexicon:
        data = json.loads(path.read_text())
        lists = {c: data[c] for c in CATEGORIES if c in data}
        return cls(lists, data.get("allow", {}), data.get("minors", []))

    def matches(self, norm: str) -> dict[str, list[str]]:
        """Category -> matched phrases, for a normalise()d text."""
        out = {}
        for c, pat in self.patterns.items():
            text = self.allow[c].sub(" ", norm) if c in self.allow else norm
            found = pat.findall(text)
            squashed = text.replace(" ", "")
            joined = {f.replace(" ", "") for f in found}
            found += [p for p in self.squashed[c] if p in squashed and p not in joined]
            if found:
                out[c] = found
        return out

    def names_minor(self, norm: str) -> bool:
        return bool(self.minors.search(norm))


# ---------------------------------------------------------------------------------------------- classifier


def embed(encoder: TextEncoder, texts: list[str], batch: int = 64) -> torch.Tensor:
    """(N, D) mean-pooled, L2-normalised sentence embeddings (how all-MiniLM-L6-v2 was trained to be used)."""
    out = []
    for i in range(0, len(texts), batch):
        emb, mask = encoder.encode(texts[i : i + batch])  # (B, L, D), (B, L)
        m = mask.unsqueeze(-1).float()
        pooled = (emb * m).sum(1) / m.sum(1).clamp(min=1)  # (B, D)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out)


@dataclass
class Head:
    """Logistic regression per category: sigmoid(x W^T + b) >= threshold."""

    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    thresholds: dict[str, float]
    meta: dict

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x @ self.weight.T.float() + self.bias.float())  # (N, C)

    @classmethod
    def load(cls, folder: Path = ASSETS) -> Head:
        meta = json.loads((folder / "head.json").read_text())
        t = load_file(str(folder / "head.safetensors"))
        if tuple(meta["categories"]) != CATEGORIES:
            raise ValueError(f"moderation head in {folder} has categories {meta['categories']}, not {CATEGORIES}")
        return cls(t["weight"], t["bias"], meta["thresholds"], meta)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {"weight": self.weight.half().contiguous(), "bias": self.bias.half().contiguous()},
            str(folder / "head.safetensors"),
        )
        (folder / "head.json").write_text(json.dumps({**self.meta, "thresholds": self.thresholds}, indent=1) + "\n")


class Moderator:
    """The policy check: `moderator(["prompt", ...])` -> [Verdict, ...]."""

    def __init__(self, encoder: TextEncoder | None = None, head: Head | None = None, lexicon: Lexicon | None = None):
        self.head = head or _shipped_head()
        self.lexicon = lexicon or _shipped_lexicon()
        ok = (
            encoder is not None
            and encoder.name == self.head.meta["encoder"]
            and encoder.dim == self.head.weight.shape[1]
        )
        self.encoder = encoder if ok else _default_encoder()

    def __call__(self, prompts: list[str]) -> list[Verdict]:
        norms = [normalise(p) for p in prompts]
        probs = self.head.scores(embed(self.encoder, [n or "." for n in norms]))  # (N, C)
        verdicts = []
        for norm, p in zip(norms, probs.tolist(), strict=True):
            scores = dict(zip(CATEGORIES, p, strict=True))
            for c in self.lexicon.matches(norm):
                scores[c] = 1.0
            flagged = {c for c in CATEGORIES if scores[c] >= self.head.thresholds[c]}
            if "sexual" in flagged and self.lexicon.names_minor(norm):
                scores["sexual_minors"] = max(scores["sexual_minors"], scores["sexual"])
                flagged.add("sexual_minors")
            cats = [c for c in CATEGORIES if c in flagged]
            verdicts.append(Verdict(not cats, cats, {c: round(s, 3) for c, s in scores.items()}))
        return verdicts


@functools.cache
def _shipped_head() -> Head:
    return Head.load()


@functools.cache
def _shipped_lexicon() -> Lexicon:
    return Lexicon.load()


@functools.cache
def _default_encoder() -> TextEncoder:
    return TextEncoder.from_pretrained()


def moderate(prompt: str, encoder: TextEncoder | None = None) -> Verdict:
    """The verdict on one prompt. encoder: reuse a loaded MiniLM (e.g. pipe.text_encoder)."""
    return Moderator(encoder)([prompt])[0]


def check_prompts(prompts: dict[str, str], encoder: TextEncoder | None = None) -> None:
    """Raise PolicyError for the first refused prompt; prompts maps a label ("prompt", "shot 2 prompt",
    "negative prompt") to its text. Empty texts are skipped."""
    items = [(k, v) for k, v in prompts.items() if v and v.strip()]
    if not items:
        return
    for (label, _), v in zip(items, Moderator(encoder)([t for _, t in items]), strict=True):
        if not v.allowed:
            raise PolicyError(v.categories, label)


# ---------------------------------------------------------------------------------------------- data + training


def load_prompts(split: str, path: Path = ASSETS / "prompts.jsonl") -> list[tuple[str, list[str]]]:
    """(text, categories) of a split ("train" or "test") of the labelled prompt set."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    bad = {c for r in rows for c in r["labels"]} - set(CATEGORIES)
    if bad:
        raise ValueError(f"{path}: unknown categories {sorted(bad)}")
    return [(r["text"], r["labels"]) for r in rows if r["split"] == split]


def world_prompts(split: str, n: int, start: int = 0) -> list[str]:
    """Short captions of procedural-world scenes: what the shipped model is prompted with. All must pass."""
    from kinema import world

    return [world.short_caption(world.sample_scene(i, split)) for i in range(start, start + n)]


def targets(labels: list[list[str]]) -> torch.Tensor:
    """(N, C) multi-hot."""
    y = torch.zeros(len(labels), len(CATEGORIES))
    for i, cats in enumerate(labels):
        for c in cats:
            y[i, CATEGORIES.index(c)] = 1.0
    return y


def train_head(
    x: torch.Tensor, y: torch.Tensor, epochs: int = 400, lr: float = 0.05, weight_decay: float = 1e-4, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-batch Adam on binary cross-entropy; positives up-weighted by sqrt(negatives / positives)."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], y.shape[1])
    pos = y.sum(0).clamp(min=1)
    pos_weight = ((len(y) - pos) / pos).sqrt().clamp(1.0, 5.0)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(lin(x), y, pos_weight=pos_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lin.weight.detach(), lin.bias.detach()


def pick_thresholds(x: torch.Tensor, y: torch.Tensor, folds: int = 5, seed: int = 0, **kw) -> dict[str, float]:
    """Per category, the threshold in [0.5, 0.95] with the best F1 on out-of-fold scores of the train split
    (ties go to the higher threshold), so the test split plays no part in choosing it."""
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    oof = torch.zeros_like(y)
    for k in range(folds):
        held = order[k::folds]
        keep = torch.ones(len(x), dtype=torch.bool)
        keep[held] = False
        w, b = train_head(x[keep], y[keep], seed=seed, **kw)
        oof[held] = torch.sigmoid(x[held] @ w.T + b)
    out = {}
    for i, c in enumerate(CATEGORIES):
        best = (-1.0, 0.5)
        for t in torch.arange(0.5, 0.951, 0.05).tolist():
            pred, truth = oof[:, i] >= t, y[:, i] > 0
            tp = (pred & truth).sum().item()
            f1 = 2 * tp / max(1, pred.sum().item() + truth.sum().item())
            best = max(best, (f1, round(t, 2)))
        out[c] = best[1]
    return out


def train(out: Path = ASSETS, epochs: int = 400, seed: int = 0) -> Head:
    """Train the head on the train split and benign world captions, and save it to `out`."""
    rows = load_prompts("train")
    world_train = world_prompts("train", 300)
    texts = [t for t, _ in rows] + world_train
    labels = [cats for _, cats in rows] + [[] for _ in world_train]
    encoder = _default_encoder()
    x = embed(encoder, [normalise(t) for t in texts])
    y = targets(labels)
    thresholds = pick_thresholds(x, y, seed=seed, epochs=epochs)
    weight, bias = train_head(x, y, epochs=epochs, seed=seed)
    meta = {
        "categories": list(CATEGORIES),
        "encoder": encoder.name,
        "pooling": "mean over tokens, L2-normalised, of normalise(prompt)",
        "train": {"prompts": len(rows), "world_captions": len(world_train), "epochs": epochs, "seed": seed},
        "thresholds_from": "best F1 of 5-fold out-of-fold scores on the train split",
        "command": "python -m kinema.moderation train",
    }
    head = Head(weight, bias, thresholds, meta)
    head.save(out)
    return head


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kinema.moderation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train the per-category head on the train split")
    p.add_argument("--out", type=Path, default=ASSETS, help="folder for head.safetensors and head.json")
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    head = train(args.out, epochs=args.epochs, seed=args.seed)
    print(f"wrote {args.out / 'head.safetensors'} and head.json ({head.meta['train']})")


if __name__ == "__main__":
    main()
