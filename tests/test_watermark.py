"""Watermark: payload coding, a round trip through H.264 crf 28, and unmarked video reads as unmarked."""

from __future__ import annotations

import numpy as np

from kinema import watermark as wm
from kinema import world as W
from kinema.video_io import h264_roundtrip


def test_convolutional_code_round_trip() -> None:
    cw = wm.codeword("c0ffee1234")
    soft = cw * (1 - 2 * wm._scrambler().astype(np.float64))
    info = wm.viterbi(soft)
    assert f"{wm._int(info[: wm.PAYLOAD_BITS]):010x}" == "c0ffee1234"


def test_round_trip_through_h264_crf28() -> None:
    frames = W.render(W.sample_scene(3, "test"), 64, 64, 12)
    marked = wm.embed(frames, "0a12345678")
    assert wm.psnr(frames, marked) >= 38
    out = h264_roundtrip(h264_roundtrip(marked, 18), 28)
    blind = wm.detect(out)
    assert blind.detected and blind.payload == "0a12345678"
    assert wm.detect(out, "0a12345678").detected
    assert not wm.detect(out, "f5e4d3c2b1").detected  # an unrelated id (ids one bit apart share most of the codeword)


def test_unmarked_video_is_not_detected() -> None:
    frames = h264_roundtrip(W.render(W.sample_scene(4, "test"), 64, 64, 12), 18)
    assert not wm.detect(frames).detected
    assert not wm.detect(frames, "0a12345678").detected
