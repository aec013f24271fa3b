"""Detector files in (`frames.read_frame`) and results out (`outputs`: mask TIFFs, ``.xy`` and
netCDF patterns), every writer atomic."""

from .frames import SUPPORTED_FORMATS, read_frame
from .outputs import (
    atomic_write,
    netcdf_safe_attrs,
    poni_from_xy_header,
    read_xy,
    write_mask_tiff,
    write_netcdf,
    write_xy,
)

__all__ = ["SUPPORTED_FORMATS", "atomic_write", "netcdf_safe_attrs", "poni_from_xy_header",
           "read_frame", "read_xy", "write_mask_tiff", "write_netcdf", "write_xy"]
