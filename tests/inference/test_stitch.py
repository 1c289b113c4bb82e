"""The seam test: with a per-pixel model, stitching windows must give the whole-image result.

A fixed random 1x1 convolution sees each pixel alone, so any blending of window outputs that is a
proper weighted average equals running the model on the whole scene at once. Seams, zero
weights at scene borders, wrong offsets for the shifted-in last window or for scenes smaller
than a window all break the equality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg.data.window_prep import Normalisation, prepare_window
from seg.geo.grid import Window, windows
from seg.inference.predictor import Predictor
from seg.inference.scenes import stitch_scene
from seg.inference.stitch import Stitcher, axis_weights, window_weights

C, K = 3, 4
MEAN, STD = np.array([100.0, 90.0, 80.0]), np.array([40.0, 30.0, 20.0])
NORM = Normalisation(MEAN, STD)


@pytest.fixture(scope="module")
def pixel_model() -> tuple[torch.nn.Module, Predictor]:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    conv = torch.nn.Conv2d(C, K, kernel_size=1)
    return conv, Predictor(conv, device="cpu", precision="fp32")


def stitched(
    predictor: Predictor, image: np.ndarray, valid: np.ndarray, size: int, overlap: int
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Run the library's windowed inference + stitcher; collect what the sink receives."""
    _, h, w = image.shape
    probs = np.full((K, h, w), np.nan, np.float32)
    out_valid = np.zeros((h, w), bool)
    calls: list[tuple[int, int]] = []

    def sink(row: int, p: np.ndarray, v: np.ndarray) -> None:
        calls.append((row, p.shape[1]))
        probs[:, row : row + p.shape[1]] = p
        out_valid[row : row + p.shape[1]] = v

    def read(row: int, height: int, col: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = slice(row, row + height), slice(col, col + width)
        return image[:, rows, cols], valid[rows, cols]

    stitch_scene(
        read, h, w, size=size, overlap=overlap, predictor=predictor, norm=NORM,
        num_classes=K, sink=sink, batch_size=3,
    )  # fmt: skip
    return probs, out_valid, calls


def whole(
    conv: torch.nn.Module, predictor: Predictor, image: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    _, h, w = image.shape
    x = torch.from_numpy(prepare_window(image, valid, NORM, max(h, w))[:, :h, :w].copy())[None]
    with torch.no_grad():
        return torch.softmax(conv(x), dim=1)[0].numpy()  # (K, H, W)


def check_seamless(
    pixel_model: tuple[torch.nn.Module, Predictor],
    h: int,
    w: int,
    size: int,
    overlap: int,
    seed: int,
) -> None:
    conv, predictor = pixel_model
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (C, h, w)).astype(np.uint8)
    valid = rng.random((h, w)) > 0.05
    probs, out_valid, calls = stitched(predictor, image, valid, size, overlap)
    expect = whole(conv, predictor, image, valid)
    # Every row handed to the sink exactly once, in order, nothing past the scene.
    assert [r for r, _ in calls] == list(np.cumsum([0] + [n for _, n in calls[:-1]]))
    assert sum(n for _, n in calls) == h
    assert not np.isnan(probs).any()
    np.testing.assert_allclose(probs, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(axis=0), expect.argmax(axis=0))
    np.testing.assert_array_equal(out_valid, valid)


@pytest.mark.parametrize(
    ("h", "w", "size", "overlap"),
    [
        (1, 1, 32, 0),  # a single pixel
        (20, 13, 64, 16),  # smaller than one window
        (64, 64, 64, 0),  # exactly one window
        (65, 33, 32, 16),  # one pixel more than a window: last window shifted in
        (131, 257, 64, 31),  # odd sizes, odd overlap
        (200, 64, 64, 0),  # no overlap, non-divisible height
        (97, 161, 32, 24),  # heavy overlap
        (300, 45, 64, 63),  # stride 1 in the extreme
    ],
)
def test_stitched_equals_whole_image(pixel_model, h, w, size, overlap) -> None:
    check_seamless(pixel_model, h, w, size, overlap, seed=h * 1000 + w)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    h=st.integers(1, 150),
    w=st.integers(1, 150),
    size=st.sampled_from([32, 64]),
    overlap_frac=st.floats(0.0, 0.9),
)
def test_stitched_equals_whole_image_property(pixel_model, h, w, size, overlap_frac) -> None:
    check_seamless(pixel_model, h, w, size, int(size * overlap_frac), seed=h * 7 + w)


def test_border_weights_are_full_and_interior_never_zero() -> None:
    h, w, size, overlap = 150, 130, 64, 24
    for win in windows(h, w, size, size - overlap):
        wt = window_weights(win, h, w, overlap)
        assert wt.shape == (win.height, win.width)
        assert (wt > 0).all()
        # Sides on the scene border keep full weight: no taper to zero at the scene edge.
        if win.row_off == 0:
            assert (wt[0] == wt.max(axis=0)).all()
        if win.col_off == 0:
            assert np.allclose(wt[:, 0], wt.max(axis=1))
        if win.row_off + win.height == h:
            assert np.allclose(wt[-1], wt.max(axis=0))
        if win.col_off + win.width == w:
            assert np.allclose(wt[:, -1], wt.max(axis=1))
    # The scene's four corners and edges are weighted 1 by the windows that reach them.
    assert axis_weights(64, 24, False, False).min() == 1.0
    tapered = axis_weights(64, 24, True, True)
    assert 0 < tapered[0] < 0.01 and tapered[32] == 1.0


def test_band_memory_does_not_grow_with_height() -> None:
    """The accumulator holds one window-tall band, whatever the scene height."""
    sizes = []
    for h in (100, 10_000):
        st_ = Stitcher(h, 50, K, size=64, overlap=16, sink=lambda r, p, v: None)
        sizes.append(st_.num.nbytes + st_.den.nbytes + st_.valid.nbytes)
        for win in windows(h, 50, 64, 48):
            st_.add(win, np.full((K, 64, 64), 0.25, np.float32))
        st_.finish()
    assert sizes[0] == sizes[1] == 64 * 50 * (K * 4 + 4 + 1)


def test_uncovered_rows_are_nodata_and_order_is_enforced() -> None:
    got: dict[int, np.ndarray] = {}

    def sink(row: int, p: np.ndarray, v: np.ndarray) -> None:
        for i in range(p.shape[1]):
            got[row + i] = v[i]

    # Windows skipped for no data (as in a window store) leave rows nobody covered.
    s = Stitcher(200, 40, 2, size=32, overlap=0, sink=sink)
    s.add(Window(0, 0, 32, 32), np.ones((2, 32, 32), np.float32))
    s.add(Window(160, 8, 32, 32), np.ones((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="row-major"):
        s.add(Window(0, 0, 32, 32), np.ones((2, 32, 32), np.float32))
    s.finish()
    assert sorted(got) == list(range(200))
    assert got[0][:32].all() and not got[0][32:].any()
    assert not any(got[r].any() for r in range(32, 160))
    assert got[170][8:40].all() and not got[170][:8].any()


@pytest.mark.parametrize("where", ["read", "sink"])
def test_errors_while_reading_or_writing_reach_the_caller(pixel_model, where: str) -> None:
    """Reading runs a batch ahead and writing a batch behind in threads (seg.inference.pipeline): an
    error on either side is raised in the caller and no thread is left running."""
    import threading

    _, predictor = pixel_model
    image = np.zeros((C, 200, 50), np.uint8)
    valid = np.ones((200, 50), bool)

    def read(row: int, height: int, col: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if where == "read" and row > 64:
            raise OSError("disk gone")
        rows, cols = slice(row, row + height), slice(col, col + width)
        return image[:, rows, cols], valid[rows, cols]

    def sink(row: int, p: np.ndarray, v: np.ndarray) -> None:
        if where == "sink" and row > 0:
            raise OSError("disk full")

    before = threading.active_count()
    with pytest.raises(OSError, match="disk"):
        stitch_scene(
            read, 200, 50, size=32, overlap=8, predictor=predictor, norm=NORM,
            num_classes=K, sink=sink, batch_size=2,
        )  # fmt: skip
    assert threading.active_count() == before


def test_tta_undoes_each_augmentation(pixel_model) -> None:
    """A per-pixel model is unchanged by flips and quarter turns, so TTA must return exactly the
    plain prediction: any transform not undone (or undone the wrong way) breaks this."""
    conv, plain = pixel_model
    tta = Predictor(conv, device="cpu", precision="fp32", tta=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, C, 32, 32)).astype(np.float32)
    x[:, :, :5, :9] = 3.0  # asymmetric content: a wrong inverse would move it
    np.testing.assert_allclose(tta(x), plain(x), rtol=1e-5, atol=1e-6)
