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


def test_batched_viterbi_equals_one_at_a_time() -> None:
    soft = np.random.default_rng(0).normal(size=(4, wm.CODED_BITS))
    batch = wm.viterbi(soft)
    assert batch.shape == (4, wm.INFO_BITS)
    assert all(np.array_equal(wm.viterbi(s), b) for s, b in zip(soft, batch, strict=True))


def test_sparse_shift_reading_equals_one_fft_per_pattern() -> None:
    """_read_shifts (one FFT for the energy of every shift) against the direct ifft2 per pattern."""
    from scipy.ndimage import uniform_filter

    frames = wm.embed(W.render(W.sample_scene(5, "test"), 64, 64, 12), "0a12345678")[:, 3:61, 5:61]  # cropped
    for phase in (0, 1):
        f = np.fft.fft2(wm._folded(wm._luma(frames), phase))
        f = f / (uniform_filter(np.abs(f) ** 2, 3, mode="wrap") + 1e3)
        ref = np.fft.ifft2(f[None] * np.conj(wm._spectra())).real  # (N, TILE, TILE)
        at_zero, (dy, dx), at_best = wm._read_shifts(f)
        assert (dy, dx) == np.unravel_index(int(np.argmax((ref**2).sum(0))), (wm.TILE, wm.TILE))
        np.testing.assert_allclose(at_zero, ref[:, 0, 0], atol=1e-9 * np.abs(ref).max())
        np.testing.assert_allclose(at_best, ref[:, dy, dx], atol=1e-9 * np.abs(ref).max())
    assert wm.detect(h264_roundtrip(frames, 23)).payload == "0a12345678"
