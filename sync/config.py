"""The configuration file: one TOML document, overridable by `CRMSYNC_*` environment variables.

Nested keys use `__` in environment names: `CRMSYNC_SYSTEMS__SHOP__ACCESS_TOKEN` overrides
`[systems.shop] access_token`. Every problem is reported as one plain line naming the key path as
written in the TOML; secret values never appear in those lines.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from connectors.http import check_base_url
from connectors.redaction import redact_text, register_secret
from connectors.registry import TYPES, connector_class
from connectors.settings import Duration, StrictModel, SystemSettings
from mapping.bases import BASES
from mapping.identity import IdentitySettings
from mapping.normalize import NORMALISERS
from mapping.segments import SegmentSettings

SYSTEM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_SYSTEM_NAME = 64  # the state keys every row by its system's name in at most this many characters
DEFAULT_FILE = "crmsync.toml"
# The example config and `crmsync init` mark every value a person must fill in with this.
PLACEHOLDER = re.compile(r"replace[_-]?me", re.I)


class ConfigError(Exception):
    """One or more config problems, one plain line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class StateSettings(StrictModel):
    url: str = "sqlite:///crmsync.db"
    # PostgreSQL only: the schema that holds this deployment's state (one deployment per schema
    # in a shared database; created when missing). `schema` shadows a pydantic attribute, hence the alias.
    schema_: str | None = Field(default=None, alias="schema")
    # PostgreSQL: how long a dead active daemon's lock may outlive it before a standby takes over
    # (TCP keepalives on the lock's session are derived from it; sync/pglock.py).
    failover: Duration = 30.0
    # PostgreSQL: where the `pg_dump` made before an upgrade goes (relative to the config's folder,
    # which is read-only under the shipped systemd unit: set /var/lib/crmsync there).
    backup_dir: Path | None = None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("expected sqlite:///path or postgresql://...")
        from sqlalchemy.engine import make_url

        try:  # read here, not by the first connection: no message repeats the URL (its password)
            port = make_url(value).port
        except ValueError:
            port = 0
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("the port is not a number from 1 to 65535")
        return value

    @field_validator("schema_")
    @classmethod
    def _schema_name(cls, value: str | None) -> str | None:
        from sync.state.sql import SCHEMA_NAME

        if value is not None and not SCHEMA_NAME.match(value):
            raise ValueError(
                "a schema name is lower-case letters, digits and _ (at most 63), not starting with a digit"
            )
        return value

    @model_validator(mode="after")
    def _schema_needs_postgres(self) -> StateSettings:
        if self.schema_ is not None and not self.url.startswith("postgresql"):
            raise ValueError('schema: only a PostgreSQL state has schemas (url = "postgresql+psycopg://...")')
        return self

    @field_validator("failover")
    @classmethod
    def _failover_bounds(cls, value: float) -> float:
        if not 2 <= value <= 3600:
            raise ValueError("failover must be between 2 seconds and 1 hour")
        return value


class ScheduleSettings(StrictModel):
    interval: Duration | None = None
    timezone: str = "UTC"  # the cron line's clock (an IANA name); validated before `cron`, which reads it
    cron: str | None = None

    @field_validator("interval")
    @classmethod
    def _at_least_a_second(cls, value: float | None) -> float | None:
        if value is not None and value < 1:
            raise ValueError("interval must be at least 1 second")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from sync.cron import zone  # imports APScheduler: only for configs that name a schedule

        zone(value)
        return value

    @field_validator("cron")
    @classmethod
    def _a_line_that_fires(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5:
            raise ValueError("cron needs five fields: minute hour day month weekday")
        from sync.cron import problem, zone

        # Refused with the config, not when the daemon starts: a line APScheduler could not take
        # crashed `run` (exit 70, a restart loop under systemd), and one that never fires left it idle.
        why = problem(value, zone(info.data.get("timezone") or "UTC"), datetime.now(UTC))
        if why is not None:
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleSettings:
        if self.interval is not None and self.cron is not None:
            raise ValueError("set either interval or cron, not both")
        if self.cron is None and self.timezone != "UTC":
            raise ValueError("timezone: is the clock of a cron line; an interval has none (set cron, or drop timezone)")
        return self

    @property
    def every_seconds(self) -> float:
        return self.interval if self.interval is not None else 900.0


class WritebackSettings(StrictModel):
    tag_prefix: str = Field(default="crmsync:", min_length=2, max_length=40)
    # After a complete picture, a system that fails keeps its stored records in the picture; set this
    # to hold every write once a failing system's last complete read is older than it.
    max_staleness: Duration | None = None

    @field_validator("tag_prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        if value != value.strip() or "," in value:
            raise ValueError("a tag prefix has no surrounding spaces and no commas")
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (`[::1]:9464` for an IPv6 address) as (host, port); ValueError otherwise."""
    text = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([A-Za-z0-9.\-]+):(\d{1,5})", text)
    if match is None:
        raise ValueError("expected host:port, e.g. 127.0.0.1:9464 (an IPv6 address in brackets: [::1]:9464)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError("the port must be 0-65535")
    return host, port


class ServiceSettings(StrictModel):
    """`crmsync run` serves GET /healthz and GET /metrics here (sync/service.py) when `listen` is
    set. Any host is accepted, but the endpoints carry no authentication: keep it on loopback
    (127.0.0.1 or [::1]) and let a local Prometheus agent or a reverse proxy reach it."""

    listen: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen) if self.listen is not None else None


class AlertSettings(StrictModel):
    """When crmsync raises an alert (sync/alerts.py): an error-level log event `alert`, and a JSON
    POST to `webhook_url` when one is set. Each threshold left out turns its alert off."""

    failing_cycles: int | None = Field(default=None, ge=1)
    rejected_share: float | None = Field(default=None, ge=0, le=1)
    read_swing: float | None = Field(default=None, gt=0)
    writes_held: bool = False
    webhook_url: SecretStr | None = None
    webhook_timeout: Duration = Field(default=5.0, gt=0, le=60)
    deployment: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_base_url(value.get_secret_value())  # TLS unless loopback: the URL carries a token
        return value


class DriftGuardSettings(StrictModel):
    """When a stream's answers stop matching what its connector expects (a field renamed by the
    vendor), the stream stops instead of quarantining everything or computing zeros: on a page of at
    least `min_records` records where at least `share` of them lack the same field or are refused
    for the same reason. And contacts a full read leaves out are not taken for deleted at the vendor
    when more than `absent_share` of the stored ones (and at least `min_records`) are."""

    min_records: int = Field(default=50, ge=1)
    share: float = Field(default=0.9, gt=0, le=1)
    # A full read of a system's contacts that leaves out more than this share of the stored ones
    # (and at least `min_records`) changes nothing: a vendor-side filter or the API user's rights
    # changed, not that many customers deleted at once.
    absent_share: float = Field(default=0.05, ge=0, le=1)
    # ... and a contact is taken for deleted only once every full read over at least this long has
    # left it out: where every cycle reads the whole list (WooCommerce, Silvasoft), "two reads in a
    # row" is fifteen minutes, which a vendor's fault (a cached short page, a stale page count) can last.
    absent_for: Duration = Field(default=86400.0, ge=0)


def _system_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type")
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None)


def _system_union() -> Any:
    members = tuple(Annotated[connector_class(t).settings_class, Tag(t)] for t in TYPES)
    return Annotated[
        members[0] if len(members) == 1 else _union(members),
        Discriminator(_system_tag, custom_error_type="unknown_system_type", custom_error_message="unknown system type"),
    ]


def _union(members: tuple[Any, ...]) -> Any:
    from typing import Union

    return Union[members]  # noqa: UP007  (a runtime-built union needs the subscript form)


if TYPE_CHECKING:
    SystemConfig = SystemSettings
else:
    # A discriminated union over every registered connector's settings, on the `type` key.
    SystemConfig = _system_union()


class ReportSettings(StrictModel):
    """`crmsync report`: its language (the action words, flags, headings; segment names stay as they
    are written to the systems) and an optional persona per segment, a name and face for the group."""

    language: Literal["en", "nl"] = "en"
    personas: dict[str, str] = Field(default_factory=dict)


class CrmsyncConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRMSYNC_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        nested_model_default_partial_update=True,
    )

    state: StateSettings = Field(default_factory=StateSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    writeback: WritebackSettings = Field(default_factory=WritebackSettings)
    drift_guard: DriftGuardSettings = Field(default_factory=DriftGuardSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    segments: SegmentSettings = Field(default_factory=SegmentSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    systems: dict[str, SystemConfig] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML document arrives as init arguments; the environment overrides it.
        return (env_settings, init_settings)

    @field_validator("systems")
    @classmethod
    def _system_names(cls, systems: dict[str, Any]) -> dict[str, Any]:
        for name in systems:
            if not SYSTEM_NAME.match(name):
                raise ValueError(f"system name {name!r} must match [a-z][a-z0-9_]*")
            if len(name) > MAX_SYSTEM_NAME:
                raise ValueError(f"system name {name[:20]!r}... has {len(name)} characters (at most {MAX_SYSTEM_NAME})")
        return systems

    @model_validator(mode="after")
    def _names_refer_to_something(self) -> CrmsyncConfig:
        for name, settings in self.systems.items():
            for target in settings.links:
                if target not in self.systems or target == name:
                    raise ValueError(f"systems.{name}.links.{target}: links name another configured system")
            for field_name, override in settings.fields.items():
                if not isinstance(override, str) and override.normaliser not in NORMALISERS:
                    raise ValueError(
                        f"systems.{name}.fields.{field_name}.normaliser: unknown normaliser "
                        f"{override.normaliser!r}; one of {', '.join(sorted(NORMALISERS))}"
                    )
            for base in settings.bases or ():
                if base not in BASES:
                    raise ValueError(f"systems.{name}.bases: {base!r} is not a base ({', '.join(BASES)})")
        for position, system in enumerate(self.identity.source_priority):
            if system not in self.systems:
                raise ValueError(f"identity.source_priority[{position}]: no system named {system!r}")
        return self

    @model_validator(mode="after")
    def _segments_zone_is_known(self) -> CrmsyncConfig:
        """The segments' calendar is checked here, not in mapping/ (which reads no files): a zone's
        rules come from the system's time zone database."""
        name = self.segments.timezone
        if name is not None:
            from sync.cron import zone

            try:
                zone(name)
            except ValueError as exc:
                raise ValueError(f"segments.timezone: {exc}") from None
        return self

    @model_validator(mode="after")
    def _staleness_outlasts_the_schedule(self) -> CrmsyncConfig:
        """A `max_staleness` within the schedule's longest wait between two cycles would call the
        state stale (status exit 3, /healthz 503, writes held while a system fails) every time
        before the next cycle could run."""
        limit = self.writeback.max_staleness
        if limit is None:
            return self
        schedule = self.schedule
        if schedule.cron is not None:
            from sync.cron import longest_wait, zone

            wait = longest_wait(schedule.cron, zone(schedule.timezone), datetime.now(UTC)).total_seconds()
        else:
            wait = schedule.every_seconds
        if limit <= wait:
            raise ValueError(
                f"writeback.max_staleness: {limit:g} s is not longer than the longest wait between two "
                f"scheduled cycles ({wait:g} s): every cycle would be stale before the next one runs"
            )
        return self

    def system(self, name: str) -> SystemSettings:
        settings: SystemSettings = self.systems[name]
        return settings


class LoadedConfig(BaseModel):
    """The config together with where it came from (relative paths resolve from its folder)."""

    model_config = {"arbitrary_types_allowed": True, "frozen": True}

    path: Path
    config: CrmsyncConfig

    @property
    def folder(self) -> Path:
        return self.path.parent

    def state_url(self) -> str:
        """The state's URL as crmsync opens it: a relative SQLite path resolved from the config's
        folder; on PostgreSQL the psycopg driver, and `[state] schema` as every connection's
        `search_path` (sync/state/sql.py `with_schema`)."""
        url = self.config.state.url
        if url.startswith("sqlite:///"):
            raw = url[len("sqlite:///") :]
            if raw != ":memory:" and not Path(raw).is_absolute():
                return "sqlite:///" + str((self.folder / raw).resolve())
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        if url.startswith("postgresql"):
            from sync.state.sql import with_schema

            return with_schema(url, self.state_schema())
        return url

    def state_schema(self) -> str | None:
        """`[state] schema`: the PostgreSQL schema of this deployment (None: the server's default)."""
        return self.config.state.schema_

    def sqlite_path(self) -> Path | None:
        url = self.state_url()
        return Path(url[len("sqlite:///") :]) if url.startswith("sqlite:///") and ":memory:" not in url else None


def coverage_notes(config: CrmsyncConfig, systems: Iterable[str] | None = None) -> dict[str, str]:
    """Per system, a limit on what its records can tell (Shopify with `recent_orders_only`: 60 days
    of orders), for `report` and `explain`. Asks the connectors; makes no request."""
    notes: dict[str, str] = {}
    for name, settings in config.systems.items():
        if systems is not None and name not in systems:
            continue
        connector = connector_class(settings.type)(name, settings)
        try:
            note = connector.coverage_note()
        finally:
            connector.close()
        if note:
            notes[name] = note
    return notes


def config_path(option: Path | None) -> Path:
    if option is not None:
        return option
    from_env = os.environ.get("CRMSYNC_CONFIG")
    return Path(from_env) if from_env else Path(DEFAULT_FILE)


def load_config(path: Path) -> LoadedConfig:
    """Read, validate and register the secrets of a config file; raise ConfigError with every problem."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"config error: {path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"config error: {path}: cannot read ({exc.strerror})"]) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"config error: {path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config error: {path}: invalid TOML: {redact_text(str(exc))}"]) from None
    _register_raw_secrets(document)
    unfilled = placeholders(document, os.environ)
    try:
        config = CrmsyncConfig(**_resolve_files(document, path.resolve().parent))
    except SettingsError as exc:  # an environment override pydantic-settings could not read
        raise ConfigError(environment_errors(str(exc), os.environ)) from None
    except ValidationError as exc:
        # A key still holding its placeholder is reported as that, not as whatever else it breaks.
        # ... nor a check across a section's keys that its placeholders trip (two fields "equal").
        sections = {key.rsplit(".", 1)[0] for key in unfilled}
        prefixes = tuple(f"config error: {key}:" for key in [*unfilled, *sections])
        others = [line for line in format_errors(exc) if not line.startswith(prefixes)]
        raise ConfigError([*(f"config error: {key}: not filled in" for key in unfilled), *others]) from None
    if unfilled:
        raise ConfigError([f"config error: {key}: not filled in" for key in unfilled])
    for secret in iter_secrets(config):
        register_secret(secret)
    return LoadedConfig(path=path.resolve(), config=config)


def placeholders(document: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Key paths whose value is still the example's placeholder, in the file (unless the
    environment replaces it) or in a `CRMSYNC_*` variable."""
    overridden = {name.upper() for name in environ if name.upper().startswith("CRMSYNC_")}
    found: list[str] = []

    def walk(value: Any, path: list[str | int]) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, [*path, key])
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, [*path, index])
        elif isinstance(value, str) and PLACEHOLDER.search(value):
            name = "CRMSYNC_" + "__".join(str(part).upper() for part in path)
            if name not in overridden:
                found.append(_key_path(path))

    walk(document, [])
    for name, value in sorted(environ.items()):
        if name.upper().startswith("CRMSYNC_") and PLACEHOLDER.search(value):
            found.append(name[len("CRMSYNC_") :].lower().replace("__", "."))
    return found


def _resolve_files(document: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A relative `*_file` path in a system section (Shopify's refresh_token_file) resolves from
    the config file's folder, as the state's path does."""
    systems = document.get("systems")
    if not isinstance(systems, dict):
        return document

    def absolute(key: str, value: Any) -> Any:
        relative = key.endswith("_file") and isinstance(value, str) and not Path(value).is_absolute()
        return str(folder / value) if relative else value

    resolved = dict(document)
    resolved["systems"] = {
        name: {key: absolute(key, value) for key, value in section.items()} if isinstance(section, dict) else section
        for name, section in systems.items()
    }
    return resolved


def _register_raw_secrets(document: dict[str, Any]) -> None:
    """Register anything that looks like a credential before validation, so that no error line
    about a malformed section can echo it."""
    for section in (document.get("systems") or {}).values():
        if isinstance(section, dict):
            for key, value in section.items():
                sensitive = isinstance(value, str) and re.search(r"token|key|secret|password", key, re.I)
                if sensitive and not PLACEHOLDER.search(value):
                    register_secret(value)
    for name, value in os.environ.items():
        sensitive = name.startswith("CRMSYNC_") and re.search(r"TOKEN|KEY|SECRET|PASSWORD", name)
        if sensitive and not PLACEHOLDER.search(value):
            register_secret(value)


def iter_secrets(model: Any) -> Iterator[str]:
    if isinstance(model, SecretStr):
        yield model.get_secret_value()
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            yield from iter_secrets(getattr(model, name))
    elif isinstance(model, dict):
        for value in model.values():
            yield from iter_secrets(value)
    elif isinstance(model, list | tuple):
        for value in model:
            yield from iter_secrets(value)


_MESSAGES = {
    "missing": "field required",
    "extra_forbidden": "unknown key",
    "unknown_system_type": "unknown system type; expected one of " + ", ".join(TYPES),
}


def environment_errors(message: str, environ: Mapping[str, str]) -> list[str]:
    """The config error line for an environment override that could not be read. pydantic-settings
    names only the top-level key (`field "systems"`), so the line names the variables under it,
    never their values."""
    field = re.search(r'field "(\w+)"', message)
    prefix = f"CRMSYNC_{field.group(1)}".upper() if field else "CRMSYNC_"
    names = sorted(name for name in environ if name.upper().startswith(prefix))
    return [
        f"config error: environment: one of {', '.join(names) or prefix + '*'} cannot be read: a table or a "
        'list is written as JSON, e.g. CRMSYNC_SYSTEMS__SHOP__RATE_LIMIT=\'[{"requests": 2, "per_seconds": 1}]\''
    ]


def format_errors(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        # Drop the discriminator tag pydantic inserts after systems.<name>.
        if len(loc) >= 3 and loc[0] == "systems" and loc[2] in TYPES:
            del loc[2]
        # A check across the keys of a section may find several problems: one per line of its message.
        for message in (_MESSAGES.get(error["type"]) or _plain(error["msg"])).split("\n"):
            path = _key_path(loc)
            # A check across sections names its own key path: "systems.web.links.crm: ...", and a
            # check across the keys of one section the key it is about: "access_token: field required".
            if not loc and (named := re.match(r"^([a-z_][\w.\[\]-]*): (.+)$", message)):
                path, message = named.group(1), named.group(2)
            elif loc and (named := re.match(r"^([a-z_]+): (.+)$", message)):
                path, message = f"{path}.{named.group(1)}", named.group(2)
            if error["type"] == "unknown_system_type":
                path = f"{path}.type"
            lines.append(f"config error: {path}: {redact_text(message)}")
    return lines


def _key_path(loc: list[Any]) -> str:
    """`systems.shop.rate_limit[0].requests`: dotted keys, list positions in brackets."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _plain(message: str) -> str:
    message = re.sub(r"^(Value|Assertion) error, ", "", message)
    return message[:1].lower() + message[1:]
