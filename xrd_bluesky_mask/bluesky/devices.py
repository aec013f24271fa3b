"""A simulated powder-XRD area detector for Bluesky plans (ophyd-async).

`SimXRDDetector` behaves like an area detector in ``count``/``scan``: every trigger renders one
frame with `xrd_bluesky_mask.simulate`, appends it to an SWMR HDF5 file and announces it the way
current Bluesky does for external data (one StreamResource per file, one StreamDatum per frame),
so `bluesky_tiled_plugins.TiledWriter` registers the raw run in Tiled as an external array
``run["primary"][name]`` of shape ``(N, 1, rows, cols)``. The Tiled server must be able to read
the HDF5 directory (``readable_storage``).

The geometry travels with the run in two places: the device's configuration (``<name>-poni``,
read into every descriptor) and, through `SimXRDDetector.start_metadata`, the start document
(``xrd_mask_poni``).

Example
-------
>>> RE = RunEngine(call_returns_result=True)                       # doctest: +SKIP
>>> det = make_detector("/data/raw", shape=(256, 256), name="det")  # doctest: +SKIP
>>> RE(count([det], num=3), **det.start_metadata())                # doctest: +SKIP

Create the RunEngine before the detector: ophyd-async connects on the RunEngine's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path, PurePath
from typing import Any

import h5py
import numpy as np
from ophyd_async.core import (
    DetectorAcquireLogic,
    DetectorDataLogic,
    DetectorTriggerLogic,
    PathProvider,
    StandardDetector,
    StaticPathProvider,
    StreamableDataProvider,
    StreamResourceDataProvider,
    StreamResourceInfo,
    TriggerInfo,
    UUIDFilenameProvider,
    soft_signal_r_and_setter,
)

__all__ = ["DATA_PATH", "SimXRDDetector", "XRDFrameGenerator", "make_detector", "render_frame"]

log = logging.getLogger(__name__)

#: HDF5 dataset holding the frames, ``(N, rows, cols)``.
DATA_PATH = "/entry/data/data"
_DTYPES = {"float32": np.dtype("<f4"), "uint32": np.dtype("<u4")}
_BAD = ("zero", "nan")


@functools.lru_cache(maxsize=6)
def render_frame(preset_name: str, seed: int, shape: tuple[int, int]) -> np.ndarray:
    """One simulated frame (float32 counts, ``shape``), cached: equal arguments, equal frame."""
    from ..simulate import simulate_frame

    image = simulate_frame(preset_name, seed=seed, shape=shape).image
    image.setflags(write=False)
    return image


class XRDFrameGenerator:
    """Renders simulated frames and appends them to an SWMR HDF5 file.

    Parameters
    ----------
    shape
        Frame ``(rows, cols)`` in pixels.
    presets
        Scene preset name, or names cycled frame by frame (``"rings_spots"``, ``"spots_po"``,
        ``"spots_texture"``, ``"perfect"``).
    seed
        Seed of frame 0; frame ``k`` uses ``seed + k`` (or ``seed + k % n_unique``).
    dtype
        ``"float32"`` or ``"uint32"`` (counts rounded and clipped at 0).
    n_unique
        Render at most this many distinct frames and cycle them (fast long scans); None: every
        frame differs.
    bad_frames
        ``{frame index: "zero" | "nan"}``: frames replaced by an all-zero or all-NaN image (NaN
        becomes zero for uint32), to exercise error handling downstream.
    exposure_s
        Seconds each frame takes to "expose" (a sleep on the event loop); 0 = as fast as possible.
    """

    def __init__(
        self,
        shape: tuple[int, int] = (2880, 2880),
        presets: str | Sequence[str] = ("rings_spots", "spots_po", "spots_texture", "perfect"),
        *,
        seed: int = 0,
        dtype: str = "float32",
        n_unique: int | None = None,
        bad_frames: Mapping[int, str] | None = None,
        exposure_s: float = 0.0,
    ) -> None:
        from ..simulate import PRESETS

        self.presets = (presets,) if isinstance(presets, str) else tuple(presets)
        unknown = [p for p in self.presets if p not in PRESETS]
        if not self.presets or unknown:
            raise ValueError(
                f"unknown scene preset(s) {unknown or '(none given)'}; "
                f"choose from {', '.join(PRESETS)}"
            )
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        bad = dict(bad_frames or {})
        if any(v not in _BAD for v in bad.values()):
            raise ValueError(f"bad_frames values must be 'zero' or 'nan', got {bad}")
        if n_unique is not None and n_unique < 1:
            raise ValueError(f"n_unique must be >= 1 or None, got {n_unique}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.seed, self.dtype, self.n_unique = int(seed), _DTYPES[dtype], n_unique
        self.bad_frames, self.exposure_s = bad, float(exposure_s)
        self.n_frames = 1
        self._file: h5py.File | None = None
        self._dset: h5py.Dataset | None = None
        self.images_written, self._set_written = soft_signal_r_and_setter(int)

    @functools.cached_property
    def poni_text(self) -> str:
        """PONI text of the simulated detector (the same for every preset at this shape)."""
        from ..simulate import preset

        return preset(self.presets[0]).with_shape(self.shape).geometry().poni_text

    def scene_of(self, k: int) -> tuple[str, int]:
        """``(preset name, seed)`` of frame ``k``."""
        key = k if self.n_unique is None else k % self.n_unique
        return self.presets[key % len(self.presets)], self.seed + key

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` as written to the file (``dtype``, ``shape``)."""
        kind = self.bad_frames.get(k)
        if kind is not None:
            fill = np.nan if kind == "nan" and self.dtype.kind == "f" else 0
            return np.full(self.shape, fill, dtype=self.dtype)
        image = render_frame(*self.scene_of(k), self.shape)
        if self.dtype.kind == "u":
            return np.clip(np.rint(image), 0, None).astype(self.dtype)
        return image.astype(self.dtype, copy=False)

    def prerender(self, n: int) -> None:
        """Render frames ``0..n-1`` now (e.g. before timing a scan); later triggers reuse them."""
        for k in range(n):
            self.frame(k)

    def open_file(self, path: PurePath) -> None:
        """Create the HDF5 file with an empty, growable frame dataset, in SWMR mode."""
        rows, cols = self.shape
        self._file = h5py.File(path, "w", libver="latest")
        self._dset = self._file.create_dataset(
            DATA_PATH, shape=(0, rows, cols), maxshape=(None, rows, cols),
            chunks=(1, rows, cols), dtype=self.dtype,
        )
        self._file.swmr_mode = True
        self._set_written(0)

    def close_file(self) -> None:
        """Close the file (idempotent)."""
        if self._file is not None:
            self._file.close()
        self._file = self._dset = None

    def write_next(self) -> None:
        """Append the next frame and flush it so SWMR readers see it."""
        if self._dset is None:
            raise RuntimeError("XRDFrameGenerator: open_file() must run before write_next()")
        k = self._dset.shape[0]
        frame = self.frame(k)
        self._dset.resize(k + 1, axis=0)
        self._dset[k] = frame
        self._dset.flush()
        self._set_written(k + 1)

    async def write_images(self) -> None:
        """Write ``n_frames`` frames, ``exposure_s`` apart."""
        for _ in range(self.n_frames):
            await asyncio.sleep(self.exposure_s)
            self.write_next()


class _TriggerLogic(DetectorTriggerLogic):
    def __init__(self, generator: XRDFrameGenerator) -> None:
        self.generator = generator

    async def prepare_internal(self, num: int, livetime: float, deadtime: float) -> None:
        self.generator.n_frames = max(int(num), 1)

    async def default_trigger_info(self) -> TriggerInfo:
        return TriggerInfo()


class _AcquireLogic(DetectorAcquireLogic):
    def __init__(self, generator: XRDFrameGenerator) -> None:
        self.generator = generator
        self.task: asyncio.Task | None = None

    async def start_acquiring(self) -> None:
        self.task = asyncio.create_task(self.generator.write_images())

    async def wait_for_idle(self) -> None:
        if self.task:
            await self.task

    async def ensure_stopped(self) -> None:
        if self.task:
            self.task.cancel()
            with suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class _DataLogic(DetectorDataLogic):
    def __init__(self, path_provider: PathProvider, generator: XRDFrameGenerator) -> None:
        self.path_provider = path_provider
        self.generator = generator

    async def prepare_unbounded(self, datakey_name: str) -> StreamableDataProvider:
        info = self.path_provider(datakey_name)
        self.generator.open_file(info.directory_path / f"{info.filename}.h5")
        rows, cols = self.generator.shape
        resource = StreamResourceInfo(
            data_key=datakey_name,
            shape=(rows, cols),
            chunk_shape=(1, rows, cols),
            dtype_numpy=self.generator.dtype.str,
            parameters={"dataset": DATA_PATH},
        )
        return StreamResourceDataProvider(
            uri=f"{info.directory_uri}{info.filename}.h5",
            resources=[resource],
            mimetype="application/x-hdf5",
            collections_written_signal=self.generator.images_written,
        )

    async def stop(self) -> None:
        self.generator.close_file()

    def get_hinted_fields(self, datakey_name: str) -> Sequence[str]:
        return [datakey_name]


class SimXRDDetector(StandardDetector):
    """Simulated XRD area detector writing float32/uint32 frames to HDF5 (see module docs).

    Parameters
    ----------
    path_provider
        Where files go (e.g. ``StaticPathProvider(UUIDFilenameProvider(), directory)``).
    generator
        The `XRDFrameGenerator` (frame size, presets, seed, dtype, bad frames).
    name
        Device name; the image data key is this name.

    Configuration (read into every descriptor): ``<name>-poni`` (PONI text), ``<name>-presets``,
    ``<name>-seed``, ``<name>-shape`` (``"rows x cols"`` px).
    """

    def __init__(self, path_provider: PathProvider, generator: XRDFrameGenerator,
                 name: str = "") -> None:
        self.generator = generator
        self.poni, _ = soft_signal_r_and_setter(str, generator.poni_text)
        self.presets, _ = soft_signal_r_and_setter(str, ",".join(generator.presets))
        self.seed, _ = soft_signal_r_and_setter(int, generator.seed)
        self.shape, _ = soft_signal_r_and_setter(str, "{} x {}".format(*generator.shape))
        self.add_detector_logics(
            _TriggerLogic(generator),
            _AcquireLogic(generator),
            _DataLogic(path_provider, generator),
        )
        self.add_config_signals(self.poni, self.presets, self.seed, self.shape)
        super().__init__(name=name)

    def start_metadata(self) -> dict[str, Any]:
        """Start-document metadata naming the geometry: pass as ``RE(plan, **md)``.

        Returns
        -------
        dict
            ``{"xrd_mask_poni": PONI text, "xrd_mask_detector": {name, shape_px, dtype,
            presets, seed}}``.
        """
        g = self.generator
        return {
            "xrd_mask_poni": g.poni_text,
            "xrd_mask_detector": {
                "name": self.name, "shape_px": list(g.shape), "dtype": g.dtype.str,
                "presets": list(g.presets), "seed": g.seed, "simulated": True,
            },
        }


def make_detector(
    directory: str | Path,
    *,
    shape: tuple[int, int] = (2880, 2880),
    presets: str | Sequence[str] = ("rings_spots", "spots_po", "spots_texture", "perfect"),
    seed: int = 0,
    dtype: str = "float32",
    n_unique: int | None = None,
    bad_frames: Mapping[int, str] | None = None,
    exposure_s: float = 0.0,
    name: str = "det",
    connect: bool = True,
    run_engine: Any = None,
) -> SimXRDDetector:
    """Build (and connect) a `SimXRDDetector` writing HDF5 files into ``directory``.

    ``connect=True`` connects on ``run_engine``'s event loop, or (None) on the loop of the most
    recently created RunEngine, which must exist. See `XRDFrameGenerator` for the other
    parameters.
    """
    from bluesky.run_engine import call_in_bluesky_event_loop

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    generator = XRDFrameGenerator(shape, presets, seed=seed, dtype=dtype, n_unique=n_unique,
                                  bad_frames=bad_frames, exposure_s=exposure_s)
    det = SimXRDDetector(StaticPathProvider(UUIDFilenameProvider(), directory), generator,
                         name=name)
    if connect:
        try:
            if run_engine is not None:
                asyncio.run_coroutine_threadsafe(det.connect(), run_engine.loop).result(30)
            else:
                call_in_bluesky_event_loop(det.connect(), timeout=30)
        except Exception as exc:
            raise RuntimeError(
                f"could not connect the simulated detector {name!r}: {exc}. Create the "
                "RunEngine (bluesky.RunEngine()) before the detector."
            ) from exc
    return det
