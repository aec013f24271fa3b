"""Settings of the beamline IPython profile: one TOML file, then environment variables.

Settings come from one TOML file (``profiles/profile_xrd/xrd_settings.toml`` documents every key;
``$XRD_SETTINGS`` names another file), then from environment variables, which win:
``XRD_TILED_URI`` / ``TILED_URI``, ``TILED_API_KEY``, ``XRD_MASKER``, ``XRD_MODEL``,
``XRD_DATA_DIR``, ``XRD_DETECTOR_SHAPE`` (``"rows x cols"``). Unknown keys are errors, so a
misspelt option fails at startup instead of being ignored.

`ProfileSettings` is a pydantic-settings ``BaseSettings``: its sources are the TOML file
(``TomlConfigSettingsSource``) and the variables above, each declared on the setting it
overrides (`Env`). Only those names are read: pydantic-settings' own environment, ``.env`` and
secrets sources are off, so no other variable can change a setting by accident.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ..errors import InputFileError, XRDMaskError

__all__ = [
    "DetectorSettings",
    "Env",
    "MaskingSettings",
    "ProfileSettings",
    "RunEngineSettings",
    "TiledSettings",
    "load_settings",
]

log = logging.getLogger(__name__)

#: Environment variable naming the settings file.
SETTINGS_ENV = "XRD_SETTINGS"


class Env:
    """Marks a setting (``Annotated[type, Env(...)]``) that environment variables override: the
    first of ``names`` that is set and not empty wins over the settings file."""

    def __init__(self, *names: str) -> None:
        self.names = names

    def __repr__(self) -> str:
        return f"Env{self.names!r}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TiledSettings(_Section):
    """Where runs and results go."""

    uri: Annotated[str, Env("XRD_TILED_URI", "TILED_URI")] = Field(
        default="",
        description="Server URI, e.g. http://tiled:8000/api/v1; empty: the embedded server")
    api_key: Annotated[str, Env("TILED_API_KEY")] = Field(
        default="", description="API key; empty: $TILED_API_KEY")
    runs_path: str = Field(default="",
                           description="Container for the runs, e.g. 'raw'; empty: root")
    fallback_to_embedded: bool = Field(
        default=False,
        description="Start the embedded server when `uri` does not answer (runs then "
                    "land in a local catalog, not the facility's)")
    embedded_directory: str = Field(default="", description="Embedded server's catalog; empty: "
                                                            "<data_dir>/tiled")
    embedded_mode: Literal["thread", "process"] = Field(
        default="thread", description="'process' serves from a child process (no GIL contention "
                                      "with the RunEngine), 'thread' starts faster")


class RunEngineSettings(_Section):
    """The RunEngine."""

    metadata: dict[str, Any] = Field(default_factory=dict,
                                     description="Added to every start document (RE.md)")
    persist_metadata: bool = Field(default=True, description="Keep RE.md (scan_id, ...) across "
                                                             "sessions in <data_dir>/runengine-md")


class DetectorSettings(_Section):
    """The simulated area detector (see 30-detector.py for a real one)."""

    kind: Literal["simulated", "none"] = "simulated"
    name: str = "det"
    shape: Annotated[tuple[int, int], Env("XRD_DETECTOR_SHAPE")] = (2880, 2880)
    presets: list[str] = Field(default_factory=lambda: [
        "rings_spots", "spots_po", "spots_texture", "perfect"])
    seed: int = 0
    dtype: Literal["float32", "uint32"] = "float32"
    exposure_s: float = Field(default=0.0, ge=0)
    n_unique: int | None = Field(default=None, ge=1)

    @field_validator("shape", mode="before")
    @classmethod
    def _shape(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = re.split(r"\s*[x,×]\s*", value.strip())
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise ValueError(f"shape must be 'rows x cols', e.g. '2880 x 2880', got {value!r}")
            return tuple(int(p) for p in parts)
        return value


class MaskingSettings(_Section):
    """The live masking callback."""

    enabled: bool = True
    masker: Annotated[str, Env("XRD_MASKER")] = Field(
        default="unet", description="'unet', 'classical' or a plugin name")
    model: Annotated[str, Env("XRD_MODEL")] = Field(
        default="", description="Model folder for the U-Net; empty: the packaged model")
    poni: str = Field(default="", description="PONI file overriding the geometry the runs carry")
    root: str = Field(default="derived/xrd_mask", description="Where results go")
    frame_timeout_s: float = Field(default=30.0, gt=0)
    if_misoriented: Literal["refuse", "apply", "keep"] = Field(
        default="refuse",
        description="A run whose frames fit the PONI only flipped or transposed: no mask "
                    "(refuse), masked in the orientation that fits (apply), or as given (keep)")
    live_view: bool = Field(default=True, description="Plot spot count, masked share and "
                            "texture index against frame while a scan runs")


#: The settings file and environment that `ProfileSettings` reads (set by `load_settings`;
#: unset: no file, ``os.environ``). A context variable because pydantic-settings builds the
#: sources in a classmethod, with no way to pass them a file chosen at run time.
_INPUTS: ContextVar[tuple[Path | None, Mapping[str, str]]] = ContextVar("xrd_profile_inputs")


class _EnvSource(PydanticBaseSettingsSource):
    """The environment variables named by `Env` markers, nested like the settings."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused (`__call__` walks the nested sections itself); required by the base class."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._values(self.settings_cls)

    def _values(self, model: type[BaseModel]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            names = [n for m in info.metadata if isinstance(m, Env) for n in m.names]
            value = next((self.environ[n] for n in names if self.environ.get(n)), None)
            if value is not None:
                found[name] = value
            elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                if nested := self._values(info.annotation):
                    found[name] = nested
        return found


class ProfileSettings(BaseSettings):
    """Everything the profile reads (one TOML file, environment variables win).

    `load_settings` builds it; ``ProfileSettings()`` alone reads the defaults and
    ``os.environ``.
    """

    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True)

    data_dir: Annotated[str, Env("XRD_DATA_DIR")] = Field(
        default="~/xrd-mask-data",
        description="Detector files (raw/), embedded catalog (tiled/), RE "
                    "metadata")
    tiled: TiledSettings = Field(default_factory=TiledSettings)
    run_engine: RunEngineSettings = Field(default_factory=RunEngineSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    masking: MaskingSettings = Field(default_factory=MaskingSettings)
    source: str = Field(default="", description="The settings file read (set by load_settings)")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the `Env` variables, then the TOML file (first wins)."""
        toml_file, environ = _INPUTS.get((None, os.environ))
        return (init_settings, _EnvSource(settings_cls, environ),
                TomlConfigSettingsSource(settings_cls, toml_file=toml_file))

    def path(self, value: str) -> Path:
        """A path from the settings: ``~`` expanded, relative to the settings file's folder."""
        p = Path(os.path.expanduser(value))
        if not p.is_absolute() and self.source:
            p = Path(self.source).parent / p
        return p.resolve()

    @property
    def data_path(self) -> Path:
        """``data_dir`` as a path."""
        return self.path(self.data_dir)


def load_settings(path: str | Path | None = None,
                  environ: Mapping[str, str] | None = None) -> ProfileSettings:
    """Read the settings: ``path`` (or ``$XRD_SETTINGS``), then the environment variables.

    Parameters
    ----------
    path
        TOML settings file; None: ``$XRD_SETTINGS``, else defaults only.
    environ
        Environment (default `os.environ`).

    Raises
    ------
    InputFileError
        The file is missing or not valid TOML.
    XRDMaskError
        A key is unknown or a value invalid (the message names it).
    """
    env = os.environ if environ is None else environ
    chosen = env.get(SETTINGS_ENV) or (str(path) if path is not None else "")
    toml_file = None
    if chosen:
        toml_file = Path(os.path.expanduser(chosen)).resolve()
        if not toml_file.is_file():
            raise InputFileError(f"settings file {str(toml_file)!r} not found (from "
                                 f"{'$' + SETTINGS_ENV if env.get(SETTINGS_ENV) else 'path'})")
    token = _INPUTS.set((toml_file, env))
    try:
        return ProfileSettings(source=str(toml_file or ""))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"settings file {str(toml_file)!r} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        where = str(toml_file or "defaults and environment")
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise XRDMaskError(f"invalid settings ({where}): {problems}") from None
    finally:
        _INPUTS.reset(token)
