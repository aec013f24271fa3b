"""Detector files in (`frames.read_frame`, `frames.read_pixel_mask`) and results out
(`outputs`: mask TIFFs, ``.xy`` and netCDF patterns; `mask_files`: masks for pyFAI and
Dioptas), every writer atomic."""

from .frames import SUPPORTED_FORMATS, read_frame, read_pixel_mask
from .mask_files import MASK_FORMATS, export_mask, write_dioptas_mask, write_pyfai_mask
from .outputs import (
    atomic_write,
    netcdf_safe_attrs,
    poni_from_xy_header,
    read_xy,
    write_mask_tiff,
    write_netcdf,
    write_xy,
)

__all__ = ["MASK_FORMATS", "SUPPORTED_FORMATS", "atomic_write", "export_mask", "netcdf_safe_attrs",
           "poni_from_xy_header", "read_frame", "read_pixel_mask", "read_xy", "write_dioptas_mask",
           "write_mask_tiff", "write_netcdf", "write_pyfai_mask", "write_xy"]
