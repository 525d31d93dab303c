import itertools

import numpy as np
import pytest

from kinema import world


def test_render_is_deterministic_and_shaped() -> None:
    scene = world.sample_scene(5, "train")
    a = world.render(scene, 64, 48, fps=12)
    b = world.render(world.sample_scene(5, "train"), 64, 48, fps=12)
    assert a.shape == (25, 48, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)


def test_resolution_independent_world_units() -> None:
    scene = world.sample_scene(11, "train")
    small = world.render(scene, 64, 64, fps=6).astype(float)
    big = world.render(scene, 128, 128, fps=6).astype(float)
    down = big.reshape(big.shape[0], 64, 2, 64, 2, 3).mean((2, 4))
    assert np.abs(down - small).mean() < 6  # same picture at two resolutions


def test_holdout_pairs_never_in_train() -> None:
    for seed in range(400):
        scene = world.sample_scene(seed, "train")
        for o in scene.objects:
            assert (o.color, o.shape) not in world.HOLDOUT_HUE_SHAPE
            assert (o.shape, o.motion.kind) not in world.HOLDOUT_SHAPE_MOTION
        assert scene.template < world.N_TEMPLATES - 1
    held = [world.sample_scene(s, "holdout") for s in range(50)]
    assert all(world._held_out(s) for s in held)
    assert all(s.template == world.N_TEMPLATES - 1 for s in held)


def test_bounce_loses_energy_and_stays_above_floor() -> None:
    t = np.linspace(0, 3, 3000)
    y, bounces = world.fall_trajectory(0.2, 0.1, t)
    assert len(bounces) >= 2
    assert y.max() <= world.FLOOR_Y - 0.1 + 1e-9
    peaks = [y[(t > a) & (t < b)].min() for a, b in itertools.pairwise(bounces)]
    assert all(p2 > p1 for p1, p2 in itertools.pairwise(peaks))  # each apex lower (larger y)


@pytest.mark.parametrize("split", ["train", "test", "holdout"])
def test_short_captions_parse_back(split: str) -> None:
    for seed in range(100):
        scene = world.sample_scene(seed, split)
        parsed = world.parse_prompt(world.short_caption(scene))
        assert parsed is not None
        key = lambda s: [(o.color, o.shape, o.motion.kind, o.motion.direction) for o in s.objects]
        assert key(parsed) == key(scene)
        assert parsed.camera == scene.camera


def test_parse_relation_left_of() -> None:
    scene = world.parse_prompt("a green circle left of a yellow triangle")
    assert scene is not None
    green, yellow = scene.objects
    assert green.x < yellow.x
    assert world.parse_prompt("a dog runs") is None


def test_spec_lists_facts() -> None:
    scene = world.sample_scene(3, "train")
    spec = world.scene_spec(scene)
    assert spec["short"] and spec["long"]
    assert sum(f["check"] == "present" for f in spec["facts"]) == len(scene.objects)
    assert world.scene_from_dict(spec["scene"]) == scene


def test_unknown_split_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown split"):
        world.sample_scene(0, "validation")


@pytest.mark.parametrize("shape", world.SHAPES)
@pytest.mark.parametrize("angle", [0.0, 0.45, 2.5])
def test_falling_shapes_come_to_rest_on_the_floor(shape: str, angle: float) -> None:
    """Every shape, at any angle, ends touching the floor band: not hovering above it, not sunk into it."""
    obj = world.Obj(shape, "red", "large", 0.5, 0.3, world.Motion("fall"), angle=angle)
    last = world.render(world.Scene(objects=[obj], floor=True, duration=4.0), 128, 128)[-1].astype(int)
    red = (last[..., 0] > 150) & (last[..., 1] < 100)
    lowest = np.nonzero(red.any(1))[0].max() + 0.5  # pixel centre
    assert abs(lowest - world.FLOOR_Y * 128) < 1.5


def test_portrait_scenes_sample_and_render() -> None:
    """9:16 frames (aspect 0.5625) are narrower than the occluder margins of square ones."""
    for seed in range(40):
        scene = world.sample_scene(seed, "test", aspect=9 / 16)
        assert all(0 < x < scene.aspect for x in scene.occluders)
    assert world.render(scene, 36, 64, 12).shape == (25, 64, 36, 3)
