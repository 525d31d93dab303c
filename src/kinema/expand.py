"""Prompt expansion: rewrite a short prompt into the detailed caption style the model was trained on.

Sora (after DALL-E 3) trains on detailed captions and, at generation, expands a user's short prompt into
one with a language model. kinema's expander is local and exact for its world: it parses the prompt with
the world grammar (world.parse_prompt) and writes the long caption of the parsed scene (world.long_caption),
filling unnamed details with canonical defaults (a static camera, positions laid out in the order named).
A prompt it cannot parse, or one already written in detail, passes through unchanged.
"""

from __future__ import annotations

from kinema import world


def expand_prompt(prompt: str, aspect: float = 1.0, duration: float = 2.0) -> str:
    """The detailed caption for a short prompt, or the prompt itself when it is already long or unparsable."""
    if len(prompt.split()) > 30:
        return prompt
    scene = world.parse_prompt(prompt, aspect=aspect, duration=duration)
    if scene is None:
        return prompt
    return world.long_caption(scene)


def expand_shots(prompts: list[str], aspect: float = 1.0, durations: list[float] | None = None) -> list[str]:
    """Expand the prompts of a multi-shot video so an object keeps its identity across cuts.

    Hue and shape are in every mention ("the red circle"); size is not, so a size word given once
    ("a small red circle") is remembered and applied to the same (colour, shape) in every later shot that
    names it without one. A later explicit size word wins (the user's words are followed). The set is
    style too: a floor or a bar that an earlier shot has stays in every later shot (without it, a shot
    whose prompt names only the objects is captioned, and drawn, on an empty background)."""
    sizes: dict[tuple[str, str], str] = {}
    floor, bars = False, []
    out = []
    for i, prompt in enumerate(prompts):
        duration = durations[i] if durations else 2.0
        scene = world.parse_prompt(prompt, aspect=aspect, duration=duration, sizes=sizes)
        if scene is None or len(prompt.split()) > 30:
            out.append(prompt)
            continue
        sizes.update({(o.color, o.shape): o.size for o in scene.objects})
        scene.floor = floor = scene.floor or floor
        scene.occluders = bars = scene.occluders or bars
        out.append(world.long_caption(scene))
    return out
