"""`infra/breakers.yaml`: which job types have a circuit breaker in which env, and how it trips.

A breaker judges the type's last `window` attempts (at least `min_attempts` of them) and opens when
`failure_rate` of them failed: the type pauses itself for `cool_down_seconds`, then one probe job
runs. Only the types listed have one (in every env under `types`, or in one env under
`envs.<env>.types`); `defaults` and `envs.<env>.defaults` fill in what a type leaves out, and
`enabled: false` turns an inherited breaker off in one env. Loaded into `Infra.breakers` with the
other settings files; a bad value fails start-up with the file, key and reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jobrelay.errors import SettingsError

INTERNAL_PREFIX = "jobrelay."  # as jobrelay.registry: jobrelay's own types never break


class BreakerConfig(BaseModel):
    """How one type's breaker in one env trips and recovers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    window: Annotated[int, Field(ge=1, le=1000)] = 20
    min_attempts: Annotated[int, Field(ge=1, le=1000)] = 10
    failure_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    cool_down_seconds: Annotated[float, Field(ge=1, le=86400)] = 300

    @model_validator(mode="after")
    def _min_within_window(self) -> BreakerConfig:
        if self.min_attempts > self.window:
            raise ValueError(f"min_attempts ({self.min_attempts}) cannot exceed window ({self.window})")
        return self


Breakers = dict[str, dict[str, BreakerConfig]]  # env -> type -> its breaker


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsError(str(path), key, "must be a mapping")
    return value


def _config(path: Path, key: str, *layers: dict[str, Any]) -> BreakerConfig:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    try:
        return BreakerConfig.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SettingsError(str(path), f"{key}.{loc}" if loc else key, err["msg"]) from exc


def load_breakers(
    path: Path, env_names: tuple[str, ...] | list[str], read: Callable[[Path], dict[str, Any]]
) -> Breakers:
    """Every env's breakers (enabled ones only), the file parsed by `read`; no file means none."""
    if not path.exists():
        return {env: {} for env in env_names}
    data = read(path)
    unknown = sorted(set(data) - {"defaults", "types", "envs"})
    if unknown:
        raise SettingsError(str(path), unknown[0], "unknown key; expected defaults, types, envs")
    defaults = _mapping(path, "defaults", data.get("defaults"))
    types = _mapping(path, "types", data.get("types"))
    envs = _mapping(path, "envs", data.get("envs"))
    for env in envs:
        if env not in env_names:
            raise SettingsError(str(path), f"envs.{env}", f"unknown env; expected one of {', '.join(env_names)}")
    out: Breakers = {}
    for env in env_names:
        env_raw = _mapping(path, f"envs.{env}", envs.get(env))
        extra = sorted(set(env_raw) - {"defaults", "types"})
        if extra:
            raise SettingsError(str(path), f"envs.{env}.{extra[0]}", "unknown key; expected defaults, types")
        env_defaults = _mapping(path, f"envs.{env}.defaults", env_raw.get("defaults"))
        env_types = _mapping(path, f"envs.{env}.types", env_raw.get("types"))
        configs: dict[str, BreakerConfig] = {}
        for name in dict.fromkeys([*types, *env_types]):
            where = f"envs.{env}.types.{name}" if name in env_types else f"types.{name}"
            if name.startswith(INTERNAL_PREFIX):
                raise SettingsError(str(path), where, "jobrelay's own job types have no breaker")
            config = _config(
                path,
                where,
                defaults,
                env_defaults,
                _mapping(path, f"types.{name}", types.get(name)),
                _mapping(path, f"envs.{env}.types.{name}", env_types.get(name)),
            )
            if config.enabled:
                configs[name] = config
        out[env] = configs
    return out
