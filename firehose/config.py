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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from firehose.archive.base import AzureCredential, S3Credential
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


AWS_FIELDS = ("endpoint_url", "region", "profile", "access_key_id", "secret_access_key")
AZURE_FIELDS = ("connection_string", "account_url", "sas_token")
SERVICES = ("aws", "azure")
CredentialT = TypeVar("CredentialT", S3Credential, AzureCredential)


@dataclass(frozen=True)
class CredentialMap:
    """How to reach each firehose ``credential_id``'s store from here (LeadConduit never gives out the secrets).

    Resolution for an event's destination (service, credential_id), first match wins:

    1. ``[credentials."<credential_id>"]`` (its ``service`` must match);
    2. ``[credentials.default.<service>]``, or ``[credentials.default]`` whose ``service`` matches;
    3. for S3, the AWS SDK's own chain (environment, profile, instance role); Azure has no such chain without an
       account URL, so a missing Azure mapping is a configuration error naming the section to add.

    ``overrides`` (from flags and ``FIREHOSE_*`` variables) then replace any field they set.
    """

    aws: Mapping[str, S3Credential] = field(default_factory=dict)
    azure: Mapping[str, AzureCredential] = field(default_factory=dict)
    aws_override: S3Credential = field(default_factory=S3Credential)
    azure_override: AzureCredential = field(default_factory=AzureCredential)
    source: str = DEFAULT_CONFIG_FILE
    broken: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """Entries that cannot be used, and why (a ``*_env`` naming an unset variable); raised on use."""

    def _entry(self, service: str, table: Mapping[str, Any], credential_id: str | None) -> str | None:
        name = credential_id if credential_id in table else "default" if "default" in table else None
        if name is not None and (service, name) in self.broken:
            raise ConfigError(self.broken[(service, name)])
        return name

    def s3(self, credential_id: str | None = None) -> S3Credential:
        name = self._entry("aws", self.aws, credential_id)
        base = self.aws[name] if name else S3Credential()
        if credential_id and credential_id not in self.aws and credential_id in self.azure:
            raise ConfigError(
                f'[credentials."{credential_id}"] in {self.source} is for azure, but an S3 bucket uses it'
            )
        return _merge(base, self.aws_override)

    def azure_for(self, credential_id: str | None = None) -> AzureCredential:
        if credential_id and credential_id not in self.azure and credential_id in self.aws:
            raise ConfigError(
                f'[credentials."{credential_id}"] in {self.source} is for aws, but an Azure container uses it'
            )
        name = self._entry("azure", self.azure, credential_id)
        found = _merge(self.azure[name] if name else AzureCredential(), self.azure_override)
        if not (found.connection_string or found.account_url):
            name = credential_id or "default"
            raise ConfigError(
                f'no Azure credential for credential_id {name}: add [credentials."{name}"] with '
                f'service = "azure" and connection_string_env (or account_url) to {self.source}, '
                "or set FIREHOSE_AZURE_CONNECTION_STRING"
            )
        return found


def _merge(base: CredentialT, override: CredentialT) -> CredentialT:
    """``base`` with every field that ``override`` sets replaced."""
    changes = {name: value for name, value in vars(override).items() if value}
    return replace(base, **changes) if changes else base


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, built once."""

    api: ApiSettings
    credentials: CredentialMap = field(default_factory=CredentialMap)
    config_file: Path | None = None
    sdk_reads: bool = False
    """``FIREHOSE_SDK_READS=1``: read objects through boto3 and the Azure SDK, not the lean read path (a way back,
    should a store not take the lean path's requests)."""


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


def state_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    """The state database: the flag, else ``FIREHOSE_STATE``, else ``$XDG_STATE_HOME/firehose/state.sqlite``
    (``~/.local/state/firehose/state.sqlite``)."""
    if explicit:
        return Path(explicit)
    if env.get("FIREHOSE_STATE"):
        return Path(env["FIREHOSE_STATE"])
    base = Path(env["XDG_STATE_HOME"]) if env.get("XDG_STATE_HOME") else Path(env.get("HOME", ".")) / ".local/state"
    return base / "firehose" / "state.sqlite"


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
    credentials = _credentials(data.get("credentials", {}), env, overrides, str(config_file or DEFAULT_CONFIG_FILE))
    sdk_reads = env.get("FIREHOSE_SDK_READS", "") == "1"
    return Settings(api=api, credentials=credentials, config_file=config_file, sdk_reads=sdk_reads)


def _value(entry: Mapping[str, Any], name: str, env: Mapping[str, str], where: str, problems: list[str]) -> str | None:
    """A credential field, given plainly (``name = "..."``) or by the variable holding it (``name_env``).

    An unset variable is noted in ``problems`` rather than raised: it matters only to a command that uses this
    credential (a nightly ``firehose events`` need not have every archive's secret)."""
    if f"{name}_env" in entry:
        variable = str(entry[f"{name}_env"])
        if not env.get(variable):
            problems.append(f"{where}.{name}_env names {variable}, which is not set")
            return None
        return env[variable]
    return str(entry[name]) if entry.get(name) else None


def _credential(entry: Mapping[str, Any], service: str, env: Mapping[str, str], where: str, problems: list[str]) -> Any:
    fields = AWS_FIELDS if service == "aws" else AZURE_FIELDS
    known = {"service", *fields, *(f"{f}_env" for f in fields)}
    unknown = sorted(set(entry) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r} for service {service} (known: {', '.join(fields)})")
    value = {name: _value(entry, name, env, where, problems) for name in fields}

    def secret(name: str) -> Secret | None:
        text = value[name]
        return Secret(text) if text else None

    if service == "aws":
        return S3Credential(
            endpoint_url=value["endpoint_url"],
            region=value["region"],
            profile=value["profile"],
            access_key_id=value["access_key_id"],
            secret_access_key=secret("secret_access_key"),
        )
    return AzureCredential(
        connection_string=secret("connection_string"), account_url=value["account_url"], sas_token=secret("sas_token")
    )


def _credentials(raw: Any, env: Mapping[str, str], overrides: Mapping[str, Any], source: str) -> CredentialMap:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[credentials] in {source} must be a table")
    aws: dict[str, S3Credential] = {}
    azure: dict[str, AzureCredential] = {}
    broken: dict[tuple[str, str], str] = {}

    def add(name: str, service: str, entry: Mapping[str, Any], where: str) -> None:
        problems: list[str] = []
        credential = _credential(entry, service, env, where, problems)
        (aws if service == "aws" else azure)[name] = credential
        if problems:
            broken[(service, name)] = f"{problems[0]} (in {source})"

    for name, entry in raw.items():
        where = f'[credentials."{name}"]'
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} in {source} must be a table")
        if name == "default" and "service" not in entry and set(entry) <= set(SERVICES):
            for service, sub in entry.items():  # [credentials.default.aws] / [credentials.default.azure]
                add("default", service, sub, f"[credentials.default.{service}]")
            continue
        service = entry.get("service")
        if service not in SERVICES:
            raise ConfigError(f'{where} in {source} needs service = "aws" or "azure", got {service!r}')
        add(str(name), service, entry, where)

    def pick(flag: str, variable: str) -> str | None:
        value = overrides.get(flag) or env.get(variable)
        return str(value) if value else None

    aws_override = S3Credential(
        endpoint_url=pick("endpoint_url", "FIREHOSE_S3_ENDPOINT_URL"),
        region=pick("region", "FIREHOSE_S3_REGION"),
        profile=pick("profile", "FIREHOSE_AWS_PROFILE"),
    )
    connection_string = pick("connection_string", "FIREHOSE_AZURE_CONNECTION_STRING")
    sas_token = pick("sas_token", "FIREHOSE_AZURE_SAS_TOKEN")
    azure_override = AzureCredential(
        connection_string=Secret(connection_string) if connection_string else None,
        account_url=pick("account_url", "FIREHOSE_AZURE_ACCOUNT_URL"),
        sas_token=Secret(sas_token) if sas_token else None,
    )
    return CredentialMap(
        aws=aws, azure=azure, aws_override=aws_override, azure_override=azure_override, source=source, broken=broken
    )
