"""Masked azimuthal integration as a sparse matrix product on a torch device.

pyFAI's ``("bbox", "csr", "cython")`` engine is a sparse matrix ``C`` (bins x pixels) of
pixel-splitting coefficients. For a frame ``I``, a valid-pixel indicator ``v`` and the per-pixel
normalisation ``n`` (solid angle x polarisation) pyFAI's integrate1d computes per bin::

    signal = C @ (v I)        variance = C² @ (v max(I, 1))      norm = C @ (v n)
    intensity = signal / norm            sigma = sqrt(variance) / norm

`TorchIntegrator` takes ``C`` from pyFAI once per geometry and settings and evaluates these on
the device, for a batch of frames at a time: the mask changes every frame at no extra cost.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .integrate1d import Integrator
from .settings import IntegrationSettings


class _Result:
    """The fields of pyFAI's Integrate1dResult that `Integrator._to_dataarray` reads."""

    def __init__(self, radial: np.ndarray, intensity: np.ndarray, sigma: np.ndarray | None,
                 count: np.ndarray) -> None:
        self.radial, self.intensity, self.sigma, self.count = radial, intensity, sigma, count


class TorchIntegrator:
    """Integrate frames of one geometry on ``device`` with pyFAI's CSR matrix.

    Parameters
    ----------
    geometry
        A `Geometry` or anything `as_geometry` accepts.
    settings
        `IntegrationSettings`; its method must be a CSR one (``("bbox", "csr", ...)`` is the
        default). Units, bin count, range, polarisation and solid angle follow pyFAI exactly.
    device
        torch device for the sums; None = CPU.
    """

    def __init__(self, geometry: Any, settings: IntegrationSettings | None = None,
                 device: Any = None) -> None:
        import torch

        self.reference = Integrator(geometry, settings)
        s = self.reference.settings
        if s.method[1] != "csr":
            raise ValueError(f"TorchIntegrator needs a CSR method, got {'/'.join(s.method)}")
        if s.error_model not in ("poisson", None):
            raise ValueError("TorchIntegrator supports error_model 'poisson' or None, "
                             f"got {s.error_model!r}")
        self.geometry = self.reference.geometry
        self.device = torch.device(device or "cpu")
        shape = self.geometry.shape
        ai = self.geometry.integrator
        # one integration of a flat frame makes pyFAI build (or reuse) its engine
        probe = self.reference.integrate(np.ones(shape, np.float32))
        engine = self._engine(ai)
        coord = "two_theta" if s.unit == "2th_deg" else "q"
        self.radial = np.asarray(probe[coord].values, np.float64)
        crow = torch.from_numpy(np.asarray(engine.indptr, np.int64))
        ccol = torch.from_numpy(np.asarray(engine.indices, np.int64))
        cval = torch.from_numpy(np.asarray(engine.data, np.float32))
        size = (len(crow) - 1, int(np.prod(shape)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            self._c = torch.sparse_csr_tensor(crow, ccol, cval, size,
                                              check_invariants=False).to(self.device)
            self._c2 = torch.sparse_csr_tensor(crow, ccol, cval * cval, size,
                                               check_invariants=False).to(self.device)
        norm = np.ones(shape, np.float32)
        if s.correct_solid_angle:
            norm *= np.asarray(ai.solidAngleArray(shape), np.float32)
        if s.polarization_factor is not None:
            norm *= np.asarray(ai.polarization(shape, s.polarization_factor), np.float32)
        keep = ~self.geometry.detector_mask()
        self._norm = torch.from_numpy((norm * keep).reshape(-1)).to(self.device)
        self._keep = torch.from_numpy(keep.reshape(-1)).to(self.device)

    @staticmethod
    def _engine(ai: Any) -> Any:
        for method, eng in ai.engines.items():
            if getattr(method, "dim", 1) == 1 and getattr(eng, "engine", None) is not None \
                    and hasattr(eng.engine, "indptr"):
                return eng.engine
        raise RuntimeError("pyFAI built no CSR engine for this geometry")

    def sums(self, frames: Any, masks: Any) -> tuple[Any, Any, Any, Any]:
        """Per-bin signal, variance and normalisation, each ``(bins, batch)`` on the device, and
        the pixels left out per frame (mask, detector mask, non-finite), as pyFAI's path counts.

        ``frames`` float32 ``(batch, rows, cols)`` and ``masks`` bool (True = exclude), torch
        tensors on the device (or arrays, copied there).
        """
        import torch

        f = torch.as_tensor(frames, device=self.device, dtype=torch.float32)
        m = torch.as_tensor(masks, device=self.device)
        b = f.shape[0]
        f = f.reshape(b, -1)
        valid = (~m.reshape(b, -1)) & self._keep & torch.isfinite(f)
        fv = torch.where(valid, f, 0.0)
        cols = torch.cat([fv, valid * self._norm]).T.contiguous()  # (pixels, 2b)
        both = self._c @ cols
        # pyFAI's Poisson variance floors each pixel at 1 count (checked against pyFAI)
        var = self._c2 @ torch.where(valid, f.clamp(min=1.0), 0.0).T.contiguous()
        return both[:, :b], var, both[:, b:], (~valid).sum(dim=1)

    def integrate_batch(self, frames: Any, masks: Any) -> list:
        """1D patterns (`xarray.DataArray`, as `Integrator.integrate` returns) of a batch."""
        signal, var, norm, masked = self.sums(frames, masks)
        inten = (signal / norm).T.double().cpu().numpy()
        sigma = (var.sqrt() / norm).T.double().cpu().numpy()
        count = norm.T.double().cpu().numpy()
        size = int(np.prod(self.geometry.shape))
        out = []
        for i, n_masked in enumerate(masked.tolist()):
            res = _Result(self.radial, inten[i],
                          sigma[i] if self.reference.settings.error_model else None, count[i])
            out.append(self.reference._to_dataarray(res, n_masked, size))
        return out

    def integrate(self, frame: Any, mask: Any) -> Any:
        """One frame's 1D pattern; see `integrate_batch`."""
        import torch

        f = torch.as_tensor(frame)[None]
        m = torch.as_tensor(mask if mask is not None else np.zeros(f.shape[1:], bool))[None]
        return self.integrate_batch(f, m)[0]
