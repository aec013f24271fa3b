"""Can the Tiled server read the files of a folder? Asked once, before registering it.

Tiled accepts the registration of files outside its readable storage, or that the user it runs
as may not read, and refuses only when they are read: every read then answers HTTP 500, which
clients retry for ~27 s. `check_server_reads` registers one image of the folder in a scratch
container, reads one pixel of it without retries and deletes the container, so
`tiled_adapters.register_frames` stops with one message that says what to do, having
registered nothing.
"""

from __future__ import annotations

import os
import secrets
import warnings
from pathlib import Path
from typing import Any

from xrd_bluesky_mask.errors import InputFileError, TiledAuthError

from .mimetypes import IMAGE_ADAPTER, MIMETYPES_BY_FILE_EXT

__all__ = ["check_folder_readable", "check_server_reads", "first_image"]

#: HTTP statuses that mean "not allowed to register here" rather than "something broke".
_REFUSED = (401, 403, 405)


def check_folder_readable(folder: Path) -> None:
    """Raise `InputFileError` unless this process may list ``folder`` and open its entries."""
    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputFileError(
            f"cannot read the folder {str(folder)!r} (permission denied for this user, uid "
            f"{os.getuid()}): make it readable (chmod a+rx, or add this user to its group) "
            "or register it as a user who can read it."
        )


def first_image(folder: Path) -> Path | None:
    """The first detector image (by name, depth first) under ``folder``, or None."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() in MIMETYPES_BY_FILE_EXT and path.is_file():
                return path
    return None


def _probe_node(scratch: Any, image: Path) -> tuple[Any, int] | None:
    """Register ``image`` in ``scratch``; the node and its number of dimensions, or None if
    the image cannot be read here (the walker reports such files itself)."""
    from tiled.structures.data_source import Asset, DataSource, Management
    from tiled.utils import ensure_uri, import_object

    from .mimetypes import detect_mimetype

    mimetype = detect_mimetype(image, None) or "image/tiff"
    uri = ensure_uri(str(image))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no PONI beside it: irrelevant to this check
        try:
            adapter = import_object(IMAGE_ADAPTER).from_uris(uri)
        except Exception:  # noqa: BLE001 (any file fabio cannot read: not this check's business)
            return None
    structure = adapter.structure()
    source = DataSource(structure_family=adapter.structure_family, mimetype=mimetype,
                        structure=structure, parameters={}, management=Management.external,
                        assets=[Asset(data_uri=uri, is_directory=False,
                                      size=image.stat().st_size, parameter="data_uri")])
    node = scratch.new(adapter.structure_family, [source], key="probe", metadata={})
    return node, len(structure.shape)


def check_server_reads(client: Any, folder: str | Path, *, uri: str = "the Tiled server") -> None:
    """Check that the server behind ``client`` can read the detector images in ``folder``.

    Registers the first image (`first_image`) in a scratch container, reads one pixel over
    HTTP (no retries: ~0.1 s) and deletes the container. Nothing to check when the folder
    holds no detector image.

    Raises
    ------
    InputFileError
        The server answered the read with an error: the folder lies outside its readable
        storage or its user may not read it. Nothing is left registered.
    TiledAuthError
        The server does not let nodes be registered (HTTP 401/403/405: a read-only catalog or
        a key without write scope).
    """
    from tiled.client.utils import ClientError

    folder = Path(folder)
    image = first_image(folder)
    if image is None:
        return
    key = f"xrd_mask_read_check_{secrets.token_hex(6)}"
    created = False
    try:
        scratch = client.create_container(key=key, metadata={
            "purpose": "xrd-mask check that the server can read a folder; deleted at once"})
        created = True
        probe = _probe_node(scratch, image)
        if probe is None:
            return
        node, ndim = probe
        response = client.context.http_client.get(
            node.item["links"]["full"],
            params={"slice": ",".join(["0:1"] * ndim), "format": "application/octet-stream"},
            # the server drops the connection after a 500; a pooled one would be retried
            headers={"Connection": "close"})
    except ClientError as exc:
        status = exc.response.status_code
        if status not in _REFUSED:
            raise
        raise TiledAuthError(
            f"{uri} does not let folders be registered (HTTP {status}: "
            f"{str(exc).splitlines()[0]}); nothing was registered. Register on a writable "
            "catalog (tiled serve config tiled_adapters/serve_frames.yml) with an API key "
            "that may write, or serve the folder alone with python -m tiled_adapters serve."
        ) from None
    finally:
        if created:
            client.delete_contents(key, recursive=True, external_only=False)
    if response.status_code == 200:
        return
    detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
    raise InputFileError(
        f"{uri} cannot read the files in {str(folder)!r}: reading {image.name} answered HTTP "
        f"{response.status_code}{f' ({detail})' if detail else ''}; nothing was registered. "
        "The folder must lie inside the server's readable storage and be readable by the user "
        "the server runs as: with tiled_adapters/serve_frames.yml set XRD_FRAMES_DIR to it (or "
        "a folder above it) and restart the server; with tiled serve catalog add "
        f"-r {folder}. The server's log says more."
    )
