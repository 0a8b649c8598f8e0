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

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from firehose.archive.base import AzureCredential, S3Credential
from firehose.errors import ConfigError, UsageError
from firehose.secret import Secret, redact_text, redact_url

DEFAULT_CONFIG_FILE = "firehose.toml"
DEFAULT_LEADCONDUIT_URL = "https://app.leadconduit.com"
API_KEY_ENV = "LEADCONDUIT_API_KEY"


def environment_without(names: Iterable[str]) -> dict[str, str]:
    """This process's environment less ``names``: what a program firehose starts gets (an alert command is not
    handed LeadConduit's API key)."""
    withheld = set(names)
    return {name: value for name, value in os.environ.items() if name not in withheld}


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
    key_env: str = API_KEY_ENV
    """The variable the key is read from (``api_key_env`` in the config file names another): the one to name
    when it is missing."""

    def require_key(self) -> Secret:
        if self.api_key is None or not self.api_key.reveal():
            if self.key_env != API_KEY_ENV:
                raise ConfigError(
                    f"no LeadConduit API key: {self.key_env} (named by api_key_env in [leadconduit]) is not set"
                )
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
    3. for S3, the AWS SDK's own chain (environment, profile, instance role); for Azure, the SDK's own
       ``AZURE_STORAGE_CONNECTION_STRING`` (what ``localstack/stack env`` exports), else a configuration error
       naming the section to add.

    ``overrides`` (from flags and ``FIREHOSE_*`` variables) then replace any field they set.
    """

    aws: Mapping[str, S3Credential] = field(default_factory=dict)
    azure: Mapping[str, AzureCredential] = field(default_factory=dict)
    aws_override: S3Credential = field(default_factory=S3Credential)
    azure_override: AzureCredential = field(default_factory=AzureCredential)
    azure_environment: AzureCredential = field(default_factory=AzureCredential)
    """Azure's last resort: the SDK's own ``AZURE_STORAGE_CONNECTION_STRING``, used where nothing is mapped."""
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
        base = self.azure[name] if name else self.azure_environment
        if self.azure_override.account_url and not self.azure_override.connection_string:
            # A connection string wins over an account URL where both are set: the account URL a flag or variable
            # names must not lose to one from the mapping or the SDK's variable.
            base = replace(base, connection_string=None)
        found = _merge(base, self.azure_override)
        if not (found.connection_string or found.account_url):
            name = credential_id or "default"
            raise ConfigError(
                f'no Azure credential for credential_id {name}: add [credentials."{name}"] with '
                f'service = "azure" and connection_string_env (or account_url) to {self.source}, '
                "or set FIREHOSE_AZURE_CONNECTION_STRING (or the SDK's AZURE_STORAGE_CONNECTION_STRING)"
            )
        return found


def _merge(base: CredentialT, override: CredentialT) -> CredentialT:
    """``base`` with every field that ``override`` sets replaced."""
    changes = {name: value for name, value in vars(override).items() if value}
    return replace(base, **changes) if changes else base


OVERRIDES = frozenset(
    {"url", "state_file", "endpoint_url", "region", "profile", "account_url", "max_attempts", "backoff_max_seconds",
     "timeout_seconds"}
)  # fmt: skip
"""The settings a flag can override (``Settings.load``'s keywords)."""


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know, built once."""

    api: ApiSettings
    credentials: CredentialMap = field(default_factory=CredentialMap)
    config_file: Path | None = None
    sdk_reads: bool = False
    """``FIREHOSE_SDK_READS=1``: read objects through boto3 and the Azure SDK, not the lean read path (a way back,
    should a store not take the lean path's requests)."""
    state_file: Path = field(default_factory=lambda: default_state_file(Path.home()))
    """The state database (windows, findings, repairs, the replay ledger): ``--state``, else ``FIREHOSE_STATE``,
    else ``$XDG_STATE_HOME/firehose/state.sqlite`` (``~/.local/state/firehose/state.sqlite``)."""

    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each setting came from (a flag, a variable, the config file, or ``default``), by its name."""

    def described(self) -> dict[str, Any]:
        """The resolved settings for a person to read (``firehose config show``): each value with where it came
        from; secrets as ``***``, never their value; URLs without user info or credential query values."""

        def entry(name: str, value: Any) -> dict[str, Any]:
            return {"value": value, "from": self.sources.get(name, "default")}

        def credential(found: S3Credential | AzureCredential) -> dict[str, Any]:
            shown: dict[str, Any] = {}
            for name, value in vars(found).items():
                if isinstance(value, Secret):
                    shown[name] = "***" if value else None
                elif name in ("endpoint_url", "account_url") and value:
                    shown[name] = redact_text(redact_url(str(value)))  # a connection string put there by mistake
                elif name == "access_key_id" and value:
                    shown[name] = f"{str(value)[:4]}***"  # enough to tell keys apart, not to use one
                elif value is not None:
                    shown[name] = value
            return shown

        api = self.api
        credentials = self.credentials
        return {
            "config_file": entry("config_file", str(self.config_file) if self.config_file else None),
            "leadconduit": {
                "url": entry("url", redact_url(api.url)),
                "api_key": entry("api_key", "***" if api.api_key else None),
                "timeout_seconds": entry("timeout_seconds", api.timeout_seconds),
                "max_attempts": entry("max_attempts", api.max_attempts),
                "backoff_max_seconds": entry("backoff_max_seconds", api.backoff_max_seconds),
            },
            "state_file": entry("state_file", str(self.state_file)),
            "sdk_reads": entry("sdk_reads", self.sdk_reads),
            "credentials": {
                **{f"{name} (aws)": credential(found) for name, found in sorted(credentials.aws.items())},
                **{f"{name} (azure)": credential(found) for name, found in sorted(credentials.azure.items())},
            },
            "credential_overrides": {
                "aws": credential(credentials.aws_override),
                "azure": credential(credentials.azure_override),
                "azure_sdk_variable": credential(credentials.azure_environment),
            },
            "broken_credentials": [reason for reason in credentials.broken.values()],
        }

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings as the command line builds them, for a Python caller: the config file (else
        ``$FIREHOSE_CONFIG``, else ``./firehose.toml`` if present), the environment, and ``overrides`` named as
        the flags are (``url``, ``state_file``, ``endpoint_url``, ``region``, ``profile``, ``account_url``)."""
        unknown = set(overrides) - OVERRIDES
        if unknown:
            raise UsageError(
                f"Settings.load() takes no {', '.join(sorted(unknown))}; it takes {', '.join(sorted(OVERRIDES))}"
            )
        path = config_path(str(config_file) if config_file else None, os.environ, Path.cwd())
        return load_settings(config_file=path, env=os.environ, overrides=overrides)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:  # random bytes, a binary file: tomllib decodes before it parses
        raise ConfigError(f"config file {path} is not valid TOML: not UTF-8 text (byte {exc.start})") from exc
    except RecursionError as exc:  # tomllib recurses into nested arrays and inline tables
        raise ConfigError(f"config file {path} is not valid TOML: nested too deeply") from exc
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from exc


SECTIONS = {
    "leadconduit": ("url", "api_key_env", "api_key", "timeout_seconds", "max_attempts", "backoff_max_seconds"),
    "credentials": (),
}
"""The config file's sections and, for ``[leadconduit]``, its settings (``[credentials]`` entries are checked
where they are read). Anything else is refused, naming it: a misspelt ``[leadconduitt]`` or ``timeout = 5``
was silently ignored, leaving the defaults in force while the file said otherwise."""


def _check_names(data: Mapping[str, Any], path: Path | None) -> None:
    for name in data:
        if name not in SECTIONS:
            known = ", ".join(f"[{section}]" for section in SECTIONS)
            raise ConfigError(f"config file {path}: unknown section or setting {name!r} (known: {known})")
    lc = data.get("leadconduit")
    if isinstance(lc, Mapping):
        for name in lc:
            if name not in SECTIONS["leadconduit"]:
                known = ", ".join(SECTIONS["leadconduit"])
                raise ConfigError(f"config file {path}: unknown setting {name!r} in [leadconduit] (known: {known})")


def _section(data: Mapping[str, Any], name: str, path: Path | None) -> Mapping[str, Any]:
    section = data.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"[{name}] in {path} must be a table")
    return section


def _number(
    value: Any, name: str, kind: type[int] | type[float], *, minimum: float, maximum: float, flag: bool = False
) -> Any:
    """A number setting, named in the error by where it came from; ``nan``, ``inf``, ``true`` and absurd sizes
    are refused (a NaN timeout never expires, and ``true`` is not 1 attempt)."""
    error = UsageError if flag else ConfigError
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        number = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise error(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(number) or not minimum <= number <= maximum:
        raise error(f"{name} must be from {minimum:g} to {maximum:g}, got {value!r}")
    return number


def _pick(
    overrides: Mapping[str, Any],
    key: str,
    env: Mapping[str, str],
    env_names: tuple[str, ...],
    section: Mapping[str, Any],
    toml_key: str,
    default: Any,
    *,
    flag: str,
    source: Path | None,
) -> tuple[Any, str, bool]:
    """The value, the name of where it came from (for an error message), and whether that is a flag."""
    if overrides.get(key) is not None:
        return overrides[key], flag, True
    for name in env_names:
        if env.get(name):
            return env[name], name, False
    if toml_key in section:
        return section[toml_key], f"{toml_key} in [leadconduit] of {source}", False
    return default, toml_key, False


def check_api_url(url: str, where: str, *, flag: bool = False) -> str:
    """A LeadConduit base URL: http(s), a host, a valid port; refused naming ``where`` (the flag, variable or
    file it came from). ``http://`` (no host) was tried six times as "cannot reach", exit 4, and an invalid
    IPv6 literal (``http://[::1``) crashed the HTTP client."""
    error = UsageError if flag else ConfigError
    shown = redact_url(url)  # a user:password@ in it is never shown
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # parsing the port is what raises for a bad one
    except ValueError as exc:
        # urllib quotes the part it could not read: a password's, when user info hides in the URL.
        detail = "" if shown != url else f": {exc}"
        raise error(f"{where} {shown!r} is not a URL{detail}") from None
    if parts.scheme not in ("http", "https"):
        raise error(f"{where} {shown!r} must start with http:// or https://")
    if not parts.hostname:
        raise error(f"{where} {shown!r} names no host (e.g. https://app.leadconduit.com)")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise error(f"{where} {shown!r} holds spaces or control characters")
    return url


def state_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    """The state database: the flag, else ``FIREHOSE_STATE``, else ``$XDG_STATE_HOME/firehose/state.sqlite``
    (``~/.local/state/firehose/state.sqlite``)."""
    if explicit:
        return Path(explicit)
    if env.get("FIREHOSE_STATE"):
        return Path(env["FIREHOSE_STATE"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "firehose" / "state.sqlite"
    return default_state_file(Path(env.get("HOME", ".")))


def default_state_file(home: Path) -> Path:
    return home / ".local/state" / "firehose" / "state.sqlite"


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
    _check_names(data, config_file)
    lc = _section(data, "leadconduit", config_file)
    _check_file_values(lc, config_file)

    url, where, flag = _pick(
        overrides,
        "url",
        env,
        ("FIREHOSE_LEADCONDUIT_URL", "LEADCONDUIT_URL"),
        lc,
        "url",
        DEFAULT_LEADCONDUIT_URL,
        flag="--url",
        source=config_file,
    )
    url = check_api_url(str(url), where, flag=flag)
    sources: dict[str, str] = {"url": where if where != "url" else "default"}

    key_env = str(lc.get("api_key_env", API_KEY_ENV))
    key = env.get(key_env) or (str(lc["api_key"]) if "api_key" in lc else None)

    def number(key: str, variable: str, default: float, kind: type[int] | type[float], low: float, high: float) -> Any:
        value, where, flag = _pick(
            overrides, key, env, (variable,), lc, key, default, flag=FLAGS.get(key, key), source=config_file
        )
        sources[key] = where if where != key else "default"
        return _number(value, where, kind, minimum=low, maximum=high, flag=flag)

    api = ApiSettings(
        url=url.rstrip("/"),
        api_key=Secret(key) if key else None,
        timeout_seconds=number(
            "timeout_seconds", "FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS", 60.0, *NUMBERS["timeout_seconds"]
        ),
        max_attempts=number("max_attempts", "FIREHOSE_LEADCONDUIT_MAX_ATTEMPTS", 6, *NUMBERS["max_attempts"]),
        backoff_max_seconds=number(
            "backoff_max_seconds", "FIREHOSE_LEADCONDUIT_BACKOFF_MAX_SECONDS", 30.0, *NUMBERS["backoff_max_seconds"]
        ),
        key_env=key_env,
    )
    credentials = _credentials(data.get("credentials", {}), env, overrides, str(config_file or DEFAULT_CONFIG_FILE))
    sdk_reads = env.get("FIREHOSE_SDK_READS", "") == "1"
    state_file = state_path(overrides.get("state_file"), env)
    sources["state_file"] = (
        "--state" if overrides.get("state_file") else next(
            (name for name in ("FIREHOSE_STATE", "XDG_STATE_HOME") if env.get(name)), "default"
        )
    )  # fmt: skip
    sources["api_key"] = (
        key_env if env.get(key_env) else f"api_key in [leadconduit] of {config_file}" if "api_key" in lc else "not set"
    )
    sources["config_file"] = "--config or FIREHOSE_CONFIG, else ./firehose.toml" if config_file else "none"
    sources["sdk_reads"] = "FIREHOSE_SDK_READS" if sdk_reads else "default"
    return Settings(
        api=api,
        credentials=credentials,
        config_file=config_file,
        sdk_reads=sdk_reads,
        state_file=state_file,
        sources=sources,
    )


def _check_file_values(lc: Mapping[str, Any], path: Path | None) -> None:
    """Every value the file gives, checked even when a flag or variable overrides it: a file that is wrong
    is wrong for the next run that relies on it, so it is named now."""
    if "url" in lc:
        check_api_url(str(lc["url"]), f"url in [leadconduit] of {path}")
    for key, (kind, low, high) in NUMBERS.items():
        if key in lc:
            _number(lc[key], f"{key} in [leadconduit] of {path}", kind, minimum=low, maximum=high)


NUMBERS: dict[str, tuple[type[int] | type[float], float, float]] = {
    "timeout_seconds": (float, 0.1, 3600),
    "max_attempts": (int, 1, 100),
    "backoff_max_seconds": (float, 0.0, 3600),
}
"""The ``[leadconduit]`` numbers: their type and bounds."""

FLAGS = {"max_attempts": "--max-attempts", "backoff_max_seconds": "--backoff-max"}
"""The flags that override the ``[leadconduit]`` numbers, named when a value given there is refused."""


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
    sdk_string = env.get("AZURE_STORAGE_CONNECTION_STRING")
    azure_environment = AzureCredential(connection_string=Secret(sdk_string) if sdk_string else None)
    return CredentialMap(
        aws=aws,
        azure=azure,
        aws_override=aws_override,
        azure_override=azure_override,
        azure_environment=azure_environment,
        source=source,
        broken=broken,
    )
