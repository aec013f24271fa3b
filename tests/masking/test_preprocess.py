"""Frame checks: clear errors for bad input, static mask, scale-free network input."""

from __future__ import annotations

import numpy as np
import pytest

from xrd_bluesky_mask.errors import FrameError, GeometryError
from xrd_bluesky_mask.masking.preprocess import (
    NonFiniteWarning,
    network_input,
    prepare_frame,
)

from .frames import ring_frame


def test_wrong_dimensions(small_geometry):
    with pytest.raises(FrameError, match="expected one 2D frame"):
        prepare_frame(np.ones((2, 256, 256)), small_geometry)
    with pytest.raises(FrameError, match="expected one 2D frame"):
        prepare_frame(np.ones(256), small_geometry)
    f, _ = prepare_frame(np.ones((1, 256, 256)), small_geometry)  # a leading 1 is dropped
    assert f.shape == (256, 256)


def test_shape_mismatch_with_poni(small_geometry):
    with pytest.raises(GeometryError, match=r"does not match the detector shape \(256, 256\)"):
        prepare_frame(np.ones((256, 200)), small_geometry)


def test_empty_and_all_zero(small_geometry):
    with pytest.raises(FrameError, match="every valid pixel of the frame is zero"):
        prepare_frame(np.zeros((256, 256)), small_geometry)
    with pytest.raises(FrameError, match=r"every pixel of the frame is excluded \(0 NaN or "
                       r"infinite, 0 in the detector mask, 65536 flag values"):
        prepare_frame(-np.ones((256, 256)), small_geometry)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_frame_without_finite_pixels_says_so(small_geometry, value):
    with pytest.raises(FrameError) as info:
        prepare_frame(np.full((256, 256), value, np.float32), small_geometry)
    message = str(info.value)
    assert "the frame has no finite pixels: all 65536 are NaN or infinite" in message
    assert "pixel of the frame is zero" not in message


def test_nan_inf_and_flag_values_become_static(small_geometry):
    frame = np.full((256, 256), 10.0)
    frame[0, 0], frame[1, 1], frame[2, 2], frame[3, 3] = np.nan, np.inf, -2, -1
    frame[4, 4], frame[5, 5] = -2.0**100, -3.7  # a dummy sentinel; read noise (kept)
    with pytest.warns(NonFiniteWarning, match="2 pixels"):
        f, static = prepare_frame(frame, small_geometry)
    assert static[0, 0] and static[1, 1] and static[2, 2] and static[3, 3] and static[4, 4]
    assert static.sum() == 5 and not static[5, 5] and f[5, 5] == np.float32(-3.7)
    assert f[static].max() == 0 and f.dtype == np.float32


def test_negative_counts_of_signed_integer_frames_are_flags(small_geometry):
    frame = np.full((256, 256), 7, dtype=np.int32)
    frame[:3, :4] = -1
    frame[10, 10] = -5
    _, static = prepare_frame(frame, small_geometry)
    assert static[:3, :4].all() and static[10, 10] and static.sum() == 13


def test_read_noise_negatives_keep_weak_rings_unbiased(small_geometry, rng):
    """Level 3 counts under read noise 8: dropping negatives would push the mean to ~7."""
    from xrd_bluesky_mask.azimuthal import integrate

    frame = (3.0 + 8.0 * rng.standard_normal((256, 256))).astype(np.float32)
    f, static = prepare_frame(frame, small_geometry)
    assert static.sum() < 5 and (f < 0).mean() > 0.3
    pattern = integrate(f, small_geometry, mask=static)
    assert abs(float(np.nanmedian(pattern.values)) - 3.0) < 0.5
    x = network_input(f, static, small_geometry)
    assert np.all(x[:, f < 0] == 0)  # the network's input is unchanged: no information there


def test_integer_dtypes_accepted(small_geometry):
    f, static = prepare_frame(np.full((256, 256), 7, dtype=np.int32), small_geometry)
    assert f.dtype == np.float32 and not static.any()


def test_network_input_is_scale_free(small_geometry, rng):
    """Frames whose flux differs 100x give nearly the same ring-excess channel."""
    spots = [(60, 60, 2.0, 8.0)]
    lo, elo = ring_frame(small_geometry, rng, level=20, ring_peak=200, spots=[(60, 60, 2, 200)])
    hi, ehi = ring_frame(small_geometry, rng, level=2000, ring_peak=20000,
                         spots=[(60, 60, 2, 20000)])
    del spots
    xs = []
    for f in (lo, hi):
        f32, st = prepare_frame(f, small_geometry)
        xs.append(network_input(f32, st, small_geometry))
    assert xs[0].shape == (4, 256, 256) and xs[0].dtype == np.float32
    # channel 0 differs only by noise: the level normalisation removes the 100x
    assert abs(np.median(xs[0][0]) - np.median(xs[1][0])) < 0.05
    # the spot stands out in the ring-excess channel at both fluxes
    assert xs[0][1][60, 60] > 1.0 and xs[1][1][60, 60] > 1.0
    assert abs(np.median(xs[0][1])) < 0.1 and abs(np.median(xs[1][1])) < 0.1


def test_sector_channels_separate_po_bands_from_spots(small_geometry, rng):
    """A PO band is bright over a stretch of χ on both sides of the ring; a spot is not."""
    frame, _ = ring_frame(small_geometry, rng, po_strength=20.0, ring_peak=1000.0,
                          po_chi=30.0, spots=[(230, 30, 1.5, 30000.0)])
    f32, st = prepare_frame(frame, small_geometry)
    x = network_input(f32, st, small_geometry)
    tth, chi = small_geometry.tth_deg(), small_geometry.chi_deg()
    d = np.abs(((chi - 30.0) + 90.0) % 180.0 - 90.0)
    band = (np.abs(tth - 8.0) < 0.03) & (d < 3.0)
    assert band.sum() > 5
    assert np.median(x[2][band]) > 0.5 and np.median(x[3][band]) > 0.5
    # the spot is bright in the ring channel only: its sector and the opposite one are quiet
    assert x[1][230, 30] > 1.0 and abs(x[2][230, 30]) < 0.3 and abs(x[3][230, 30]) < 0.3


def test_compressed_excess_is_asinh_of_half_z_over_3():
    """The in-place arithmetic gives numpy's asinh(z/2)/3, sign included, at any magnitude."""
    import torch

    from xrd_bluesky_mask.masking.preprocess import _compress

    z = np.concatenate([-np.logspace(-6, 6, 200), [0.0], np.logspace(-6, 6, 200)])
    out = torch.empty(z.size, dtype=torch.float32)
    zt = torch.from_numpy(z.astype(np.float32))
    _compress(zt, out)
    np.testing.assert_allclose(out.numpy(), np.arcsinh(z / 2) / 3, rtol=2e-6, atol=1e-7)
    assert torch.equal(zt, torch.from_numpy(z.astype(np.float32)))  # z left as it was


def test_ring_excess_channel_is_the_excess_over_the_ring(small_geometry, rng):
    from xrd_bluesky_mask.masking.rings import ring_stats

    frame = rng.poisson(100.0, small_geometry.shape).astype(np.float32)
    frame[50, 60] = 5000.0
    f32, static = prepare_frame(frame, small_geometry)
    x = network_input(f32, static, small_geometry)
    stats = ring_stats(f32, ~static, small_geometry, max_per_bin=256)
    expected = np.arcsinh(stats.excess(f32) / 2) / 3
    np.testing.assert_allclose(x[1], np.where(static, 0.0, expected), rtol=1e-5, atol=1e-5)
    assert x[1, 50, 60] == x[1].max() > 1.0


def test_coarse_ring_channel_is_the_excess_over_coarser_rings(small_geometry, rng):
    """With a coarse ring width the input gains a fifth channel: the ring excess against rings
    of that width; the first four channels are those of the fine width alone."""
    from xrd_bluesky_mask.models.card import InputSpec

    frame, _ = ring_frame(small_geometry, rng, level=30, ring_peak=300,
                          spots=[(60, 60, 2, 300)])
    f32, static = prepare_frame(frame, small_geometry)
    both = network_input(f32, static, small_geometry,
                         InputSpec(ring_bin_px=0.5, coarse_ring_bin_px=2.0))
    fine = network_input(f32, static, small_geometry, InputSpec(ring_bin_px=0.5))
    coarse = network_input(f32, static, small_geometry, InputSpec(ring_bin_px=2.0))
    assert both.shape == (5, 256, 256) and fine.shape == (4, 256, 256)
    np.testing.assert_array_equal(both[:4], fine)
    np.testing.assert_array_equal(both[4], coarse[1])
    assert not np.array_equal(both[4], both[1])  # two widths, two different channels


def test_blob_channel_finds_a_faint_wide_spot_the_pixels_do_not(small_geometry, rng):
    """A spot 1.5 robust sigma high at its centre and 3 px wide: faint in ``ring_excess``, a
    matched-filter SNR of about 8 in ``blob_excess`` (last channel, after the coarse one)."""
    from xrd_bluesky_mask.models.card import InputSpec

    rows, cols = np.indices(small_geometry.shape)
    frame = rng.poisson(100.0, small_geometry.shape).astype(np.float32)
    frame += 15.0 * np.exp(-((rows - 80) ** 2 + (cols - 170) ** 2) / (2 * 3.0**2))
    f32, static = prepare_frame(frame, small_geometry)
    x = network_input(f32, static, small_geometry,
                      InputSpec(coarse_ring_bin_px=4.0, blob_sigmas_px=[1.0, 3.0]))
    assert x.shape == (6, 256, 256)
    blob, pixel = x[5], x[1]
    assert blob[80, 170] > np.arcsinh(4.0 / 2) / 3 > pixel[78:83, 168:173].mean()
    # away from the spot, one-sigma-per-scale noise: the matched filter is scaled to unit noise
    far = np.sinh(3 * blob[150:, :100]) * 2
    assert 0.3 < np.median(far) < 1.5 and np.percentile(far, 99.9) < 5.0
    np.testing.assert_array_equal(
        x[4], network_input(f32, static, small_geometry, InputSpec(ring_bin_px=4.0))[1])
