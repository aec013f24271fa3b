"""The area detector `det`: the simulated one unless [detector] kind = "none".

A real detector: set kind = "none" in xrd_settings.toml, name the calibration in
[masking] poni, and build it here on the RunEngine's loop (it must write HDF5 files the Tiled
server can read, i.e. inside its readable_storage), e.g. an ophyd-async Pilatus:

    from ophyd_async.core import StaticPathProvider, UUIDFilenameProvider, init_devices
    from ophyd_async.epics.adcore import ADWriterFactory
    from ophyd_async.epics.adpilatus import PilatusDetector

    path_provider = StaticPathProvider(UUIDFilenameProvider(), Path("/data/bl/raw"))
    with init_devices():
        det = PilatusDetector("BL12:PIL1:", ADWriterFactory.hdf(path_provider), name="det")
    xrd.det = det

Any detector whose descriptor has a 2D image data key works; the masking callback finds the
image key by shape.
"""

det = xrd.make_detector()  # noqa: F821
