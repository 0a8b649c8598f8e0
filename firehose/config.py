"""Settings: from flags, ``FIREHOSE_*`` environment variables and a TOML file, in that order of precedence.

Only this module and ``cli.py`` read the environment; everything below receives a frozen ``Settings``.

Where each value comes from, first match wins:

1. a command-line flag (passed in as ``overrides``);
2. the environment: ``FIREHOSE_<SECTION>_<NAME>`` (``FIREHOSE_LEADCONDUIT_URL``), and for the two values
   LeadConduit users already know, ``LEADCONDUIT_URL`` and ``LEADCONDUIT_API_KEY``;
3. the TOML file (``--config FILE``, ``FIREHOSE_CONFIG``, else ``firehose.toml`` in the working directory
   if it exists);
4. the default.

Secrets are held in ``Secret``, whose ``repr`` and ``str`` never show the value. A config file may name an
environment variable that holds a secret (``api_key_env = "MY_VAR"``) rather than the secret itself.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firehose.errors import ConfigError
from firehose.secret import Secret

DEFAULT_CONFIG_FILE = "firehose.toml"
DEFAULT_LEADCONDUIT_URL = "https://app.leadconduit.com"
API_KEY_ENV = "LEADCONDUIT_API_KEY"
API_USERNAME = "API"
"""LeadConduit ignores the Basic-auth username; its documents use ``API``."""


@dataclass(frozen=True)
class ApiSettings:
    """How to reach LeadConduit."""

    url: str = DEFAULT_LEADCONDUIT_URL
    api_key: Secret | None = None
    timeout_seconds: float = 60.0
    max_attempts: int = 6
    """Attempts per request, the first included; 429 and 5xx answers and lost connections are retried."""
    backoff_max_seconds: float = 30.0

    def require_key(self) -> Secret:
        if self.api_key is None or not self.api_key.reveal():
            raise ConfigError(f"no LeadConduit API key: set {API_KEY_ENV} (or api_key_env in [leadconduit])")
        return self.api_key


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, built once."""

    api: ApiSettings
    config_file: Path | None = None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc


def _section(data: Mapping[str, Any], name: str, path: Path | None) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] in {path} must be a table")
    return section


def _number(value: Any, name: str, kind: type[int] | type[float], *, minimum: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value!r}")
    return number


def _pick(
    overrides: Mapping[str, Any],
    key: str,
    env: Mapping[str, str],
    env_names: tuple[str, ...],
    section: Mapping[str, Any],
    toml_key: str,
    default: Any,
) -> Any:
    if overrides.get(key) is not None:
        return overrides[key]
    for name in env_names:
        if env.get(name):
            return env[name]
    if toml_key in section:
        return section[toml_key]
    return default


def config_path(explicit: str | None, env: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read: the flag, else ``FIREHOSE_CONFIG``, else ``./firehose.toml`` if present."""
    if explicit:
        return Path(explicit)
    if env.get("FIREHOSE_CONFIG"):
        return Path(env["FIREHOSE_CONFIG"])
    default = cwd / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def load_settings(
    *, config_file: Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build ``Settings`` from flags (``overrides``), the environment and the TOML file."""
    overrides = overrides or {}
    data = _read_toml(config_file) if config_file else {}
    lc = _section(data, "leadconduit", config_file)

    url = str(
        _pick(
            overrides, "url", env, ("FIREHOSE_LEADCONDUIT_URL", "LEADCONDUIT_URL"), lc, "url", DEFAULT_LEADCONDUIT_URL
        )
    )
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"LeadConduit URL {url!r} must start with http:// or https://")

    key_env = str(lc.get("api_key_env", API_KEY_ENV))
    key = env.get(key_env) or (str(lc["api_key"]) if "api_key" in lc else None)

    api = ApiSettings(
        url=url.rstrip("/"),
        api_key=Secret(key) if key else None,
        timeout_seconds=_number(
            _pick(
                overrides,
                "timeout_seconds",
                env,
                ("FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS",),
                lc,
                "timeout_seconds",
                60.0,
            ),
            "timeout_seconds",
            float,
            minimum=0.1,
        ),
        max_attempts=_number(
            _pick(overrides, "max_attempts", env, ("FIREHOSE_LEADCONDUIT_MAX_ATTEMPTS",), lc, "max_attempts", 6),
            "max_attempts",
            int,
            minimum=1,
        ),
        backoff_max_seconds=_number(
            _pick(
                overrides,
                "backoff_max_seconds",
                env,
                ("FIREHOSE_LEADCONDUIT_BACKOFF_MAX_SECONDS",),
                lc,
                "backoff_max_seconds",
                30.0,
            ),
            "backoff_max_seconds",
            float,
            minimum=0.0,
        ),
    )
    return Settings(api=api, config_file=config_file)
