"""Registering folders of detector images in a Tiled catalog.

`group_detector_series` is a Tiled *walker* (``tiled register --walker`` /
``tiled serve directory --walker``): in each folder it turns every numbered series of two or
more detector images (``scan_0001.edf``, ``scan_0002.edf``, ...; numbers sorted as numbers; the
counter need not be the last number, see `tiled_adapters.numbering`) into one ``(frame, y, x)``
node served by `FabioSequenceAdapter`, every other detector image into a
node of its own served by `FabioImageAdapter`, and consumes the ``.poni`` files (they become the
``geometry`` metadata of the frames beside them). Files of other kinds are left to Tiled's own
walkers. A series or image that cannot be read (unreadable files, mixed shapes) is skipped with a
warning that says which files and why; the rest of the folder is registered. Files that fabio
reads but no adapter serves (``.spe``, ``.mccd``, ...) are named in a warning
(`tiled_adapters.unserved`).

`register_frames` does the same from Python, for a running server.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from tiled.client.register import (
    IMG_SEQUENCE_EMPTY_NAME_ROOT,
    create_node_or_drop_collision,
    resolve_mimetype,
)
from tiled.client.utils import ClientError
from tiled.structures.data_source import Asset, DataSource, Management
from tiled.utils import ensure_uri, import_object

from .mimetypes import (
    ADAPTERS_BY_MIMETYPE,
    IMAGE_ADAPTER,
    MIMETYPES_BY_FILE_EXT,
    SEQUENCE_ADAPTER,
    sequence_mimetype,
)
from .numbering import group_numbered
from .unserved import report_unserved, unserved_files

__all__ = ["REGISTRATION", "group_detector_series", "register_frames"]

log = logging.getLogger(__name__)

#: What `tiled.client.register.register` needs to register detector images with these adapters.
REGISTRATION: dict[str, Any] = {
    "walkers": ["tiled_adapters:group_detector_series"],
    "mimetype_detection_hook": "tiled_adapters:detect_mimetype",
}


def _adapter_for(settings: Any, mimetype: str, default: str) -> Any:
    adapter = getattr(settings, "adapters_by_mimetype", {}).get(mimetype, default)
    if adapter is None or (isinstance(adapter, type) and adapter.__module__.startswith("tiled.")):
        adapter = default  # Tiled's own TIFF adapters know no detector header nor PONI
    return import_object(adapter) if isinstance(adapter, str) else adapter


def _served_by(settings: Any) -> Any:
    """Whether Tiled, with ``settings``, has an adapter for a file (as its walkers decide)."""
    by_ext = getattr(settings, "mimetypes_by_file_ext", None) or {}
    hook = getattr(settings, "mimetype_detection_hook", None)
    adapters = getattr(settings, "adapters_by_mimetype", None) or {}

    def served(path: Path) -> bool:
        return resolve_mimetype(path, by_ext, hook) in adapters

    return served


def _data_source(adapter: Any, mimetype: str, files: Sequence[Path], series: bool) -> DataSource:
    structure = adapter.structure()
    if series:
        assets = [Asset(data_uri=ensure_uri(str(f)), is_directory=False, size=f.stat().st_size,
                        parameter="data_uris", num=i) for i, f in enumerate(files)]
    else:
        assets = [Asset(data_uri=ensure_uri(str(files[0])), is_directory=False,
                        size=files[0].stat().st_size, parameter="data_uri")]
    return DataSource(structure_family=adapter.structure_family, mimetype=mimetype,
                      structure=structure, parameters={}, management=Management.external,
                      assets=assets)


async def _register(node: Any, key: str, mimetype: str, files: Sequence[Path], series: bool,
                    settings: Any) -> bool:
    """Build the adapter, then the node; False (with a warning) if either fails."""
    what = f"series {key!r} ({len(files)} files)" if series else f"image {files[0].name!r}"
    cls = _adapter_for(settings, mimetype, SEQUENCE_ADAPTER if series else IMAGE_ADAPTER)
    uris = [ensure_uri(str(f)) for f in files]
    try:
        adapter = await anyio.to_thread.run_sync(functools.partial(cls.from_uris, *uris))
    except Exception as exc:
        log.warning("SKIPPED %s in %s: %s", what, files[0].parent, exc)
        return False
    try:
        await create_node_or_drop_collision(
            node, key=key, structure_family=adapter.structure_family,
            metadata=dict(adapter.metadata()), specs=adapter.specs,
            data_sources=[_data_source(adapter, mimetype, files, series)])
    except ClientError as exc:
        hint = ""
        if exc.response.status_code == 415:
            hint = (f" The server has no adapter for {mimetype!r}: serve with "
                    "tiled_adapters/serve_frames.yml or pass the --adapter flags that "
                    "`python -m tiled_adapters flags` prints.")
        log.warning("SKIPPED %s in %s: %s.%s", what, files[0].parent,
                    str(exc).splitlines()[0], hint)
        return False
    log.info("    registered %s as %r (%s)", what, key, mimetype)
    return True


#: Environment variable naming the frame counter (``--counter`` of ``python -m tiled_adapters``)
#: for walkers run by ``tiled serve directory`` / ``tiled register``.
COUNTER_ENV = "XRD_FRAME_COUNTER"


def _counter_from_env() -> int | None:
    text = os.environ.get(COUNTER_ENV, "").strip()
    return int(text) if text else None


async def group_detector_series(node: Any, path: Path, files: list[Path],
                                directories: list[Path], settings: Any, *,
                                counter: int | None = None
                                ) -> tuple[list[Path], list[Path]]:
    """Tiled walker: register the detector images of one folder (see the module docstring).

    ``counter`` says which number of the file names counts frames (1 = the first, -1 = the
    last; default: ``$XRD_FRAME_COUNTER``, else the one number that varies, see
    `tiled_adapters.numbering`). Returns the files it left alone (not detector images) and
    every sub-folder.
    """
    if counter is None:
        counter = _counter_from_env()
    by_type: dict[str, list[Path]] = collections.defaultdict(list)
    rest: list[Path] = []
    for f in files:
        ext = f.suffix.lower()
        if ext == ".poni":
            continue  # the geometry of the frames beside it
        mimetype = MIMETYPES_BY_FILE_EXT.get(ext)
        if mimetype is None or not f.is_file():
            rest.append(f)
        else:
            by_type[mimetype].append(f)
    report_unserved(path, await anyio.to_thread.run_sync(unserved_files, rest,
                                                         _served_by(settings)))
    groups: list[tuple[str, str, list[Path]]] = []
    singles: list[tuple[Path, str]] = []
    for mimetype, members in by_type.items():
        found, alone = group_numbered(members, counter)
        groups += [(s.name, mimetype, list(s.files)) for s in found]
        singles += [(f, mimetype) for f in alone]
    names = collections.Counter(name for name, _, _ in groups)
    for name, mimetype, members in groups:
        key = name or IMG_SEQUENCE_EMPTY_NAME_ROOT
        if names[name] > 1:  # the same series name in two formats
            key = f"{key}_{mimetype.rsplit('-', 1)[-1].rsplit('/', 1)[-1]}"
        await _register(node, key, sequence_mimetype(mimetype), members, True, settings)
    key_of = getattr(settings, "key_from_filename", None) or (lambda n: Path(n).stem)
    for f, mimetype in sorted(singles):
        await _register(node, key_of(f.name), mimetype, [f], False, settings)
    return rest, directories


def register_frames(client: Any, directory: str | Path, prefix: str | None = None, *,
                    overwrite: bool = True, counter: int | None = None) -> Any:
    """Register a folder of detector images (recursively) on a running Tiled server.

    Parameters
    ----------
    client
        A writable tiled client node (e.g. the root). The server's catalog must know the MIME
        types in `ADAPTERS_BY_MIMETYPE` (``tiled_adapters/serve_frames.yml`` does).
    directory
        The folder; the server must be able to read it (``readable_storage``). Checked first
        (`tiled_adapters.server_reads`): a folder the server cannot read is an error, with
        nothing registered, instead of a registration whose every read fails.
    prefix
        Container path to register under; None: the folder's name (``/data/scan42`` →
        ``client["scan42"]``).
    overwrite
        Replace what an earlier registration put under ``prefix``.
    counter
        Which number of the file names counts frames (1 = the first, -1 = the last); None:
        the one that varies across a group of files (``Fe3O4C_M1_map_1_P1_E1_001.tif``,
        ``..._map_2_...``: the fourth).

    Returns
    -------
    The container holding the registered nodes.

    Raises
    ------
    InputFileError
        ``directory`` is not a folder, this process may not read it, or the server cannot.
    TiledAuthError
        The server does not let nodes be registered.
    """
    from tiled.client.register import register

    from .server_reads import check_folder_readable, check_server_reads

    folder = Path(directory).resolve()
    if not folder.is_dir():
        from xrd_bluesky_mask.errors import InputFileError

        raise InputFileError(f"{str(folder)!r} is not a folder of detector images")
    check_folder_readable(folder)
    check_server_reads(client, folder, uri=str(getattr(client, "uri", "the Tiled server")))
    prefix = prefix if prefix is not None else folder.name
    registration = dict(REGISTRATION)
    if counter is not None:
        registration["walkers"] = [functools.partial(group_detector_series, counter=counter)]
    coro = functools.partial(
        register, client, folder, prefix=prefix, overwrite=overwrite,
        adapters_by_mimetype=dict(ADAPTERS_BY_MIMETYPE), **registration)
    # in a thread: works whether or not this thread already runs an event loop (Jupyter)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: asyncio.run(coro())).result()
    node = client
    for segment in [s for s in prefix.split("/") if s]:
        node = node[segment]
    return node
