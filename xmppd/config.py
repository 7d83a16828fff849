"""The TOML configuration: frozen dataclasses holding every default, and a strict loader."""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from xmppd.paths import default_data_dir

# Offered in this order by default: SCRAM-SHA-512-PLUS, -256-PLUS, -1-PLUS, SCRAM-SHA-512, -256,
# -1, PLAIN. ANONYMOUS is not listed here: a host switches it on with `anonymous = true`.
_SCRAM = tuple(f"SCRAM-SHA-{bits}" for bits in (512, 256, 1))
SASL_MECHANISMS = (*(f"{m}-PLUS" for m in _SCRAM), *_SCRAM, "PLAIN")
TLS_MODES = ("starttls", "starttls-optional", "direct")
LISTENER_TYPES = ("c2s",)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
STORAGE_SCHEMES = ("sqlite", "postgresql", "memory")
DEFAULT_PORTS = {"starttls": 5222, "starttls-optional": 5222, "direct": 5223}


class ConfigError(Exception):
    """A configuration that cannot be used; the message starts with the key path at fault."""


# --- value checks: each takes (value, key path) and returns the value to keep ---------------

Check = Callable[[Any, str], Any]


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f"{key}: {message}")


def integer(low: int, high: int | None = None) -> Check:
    def check(value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(key, f"must be an integer, got {_show(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise _fail(key, f"must be {bounds}, got {value}")
        return value

    return check


def seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _fail(key, f"must be a number of seconds above 0, got {_show(value)}")
    return float(value)


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {_show(value)}")
    return value


def text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(key, f"must be a non-empty string, got {_show(value)}")
    return value


def one_of(*choices: str) -> Check:
    def check(value: Any, key: str) -> str:
        if value not in choices:
            listed = ", ".join(_show(c) for c in choices)
            raise _fail(key, f"must be one of {listed}, got {_show(value)}")
        return value

    return check


def path(value: Any, key: str) -> Path:
    return Path(text(value, key)).expanduser()  # made absolute by the loader


def storage_url(value: Any, key: str) -> str:
    scheme, sep, _ = text(value, key).partition("://")
    if not sep or scheme.split("+")[0] not in STORAGE_SCHEMES:
        expected = ", ".join(f"{s}://" for s in STORAGE_SCHEMES)
        raise _fail(key, f"must be a URL starting with one of {expected}, got {_show(value)}")
    return value


def node_name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        raise _fail(key, f"must be 1 to 64 letters, digits, '.', '_' or '-', got {_show(value)}")
    return value


def redis_url(value: Any, key: str) -> str:
    from cluster.connect import parse

    try:
        parse(text(value, key))
    except ValueError as exc:
        raise _fail(key, str(exc)) from None
    return value


def mechanisms(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(key, f"must be an array of SASL mechanism names, got {_show(value)}")
    names = [text(item, f"{key}[{i}]").upper() for i, item in enumerate(value)]
    for i, name in enumerate(names):
        if name == "ANONYMOUS":
            raise _fail(f"{key}[{i}]", "ANONYMOUS is enabled with `anonymous = true` instead")
        one_of(*SASL_MECHANISMS)(name, f"{key}[{i}]")
    return tuple(dict.fromkeys(names))


def setting(default: Any, check: Check) -> Any:  # a field the file may set, checked by `check`
    return field(default=default, metadata={"check": check})


def derived(check: Check) -> Any:  # the same, but the loader computes its default
    return field(metadata={"check": check})


# --- the configuration ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    data_dir: Path = derived(path)
    storage: str = derived(storage_url)  # default sqlite:///<data_dir>/xmppd.sqlite3
    log_level: str = setting("info", one_of(*LOG_LEVELS))
    log_format: str = setting("text", one_of(*LOG_FORMATS))
    admin_socket: Path = derived(path)  # default <data_dir>/admin.sock


@dataclass(frozen=True, slots=True, kw_only=True)
class HostConfig:
    name: str  # the domain, lower-cased
    certificate: Path = derived(path)
    key: Path = derived(path)  # the certificate file itself when only `certificate` is set
    sasl_mechanisms: tuple[str, ...] = setting(SASL_MECHANISMS, mechanisms)
    anonymous: bool = setting(False, boolean)
    self_signed: bool = False  # certificate/key are ours to generate (neither was configured)

    @property
    def offered_mechanisms(self) -> tuple[str, ...]:
        return self.sasl_mechanisms + (("ANONYMOUS",) if self.anonymous else ())


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerConfig:
    address: str = setting("127.0.0.1", text)
    port: int = derived(integer(0, 65535))  # default 5222, or 5223 for tls = "direct"; 0: any
    tls: str = setting("starttls", one_of(*TLS_MODES))
    type: str = setting("c2s", one_of(*LISTENER_TYPES))


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    max_stanza_bytes: int = setting(262_144, integer(10_000))  # RFC 6120 §13.12: ≥ 10000
    max_bytes_per_second: int = setting(100_000, integer(1))
    burst_bytes: int = setting(524_288, integer(1))
    max_sessions_per_account: int = setting(10, integer(1))
    max_connections_per_ip: int = setting(100, integer(1))
    exempt_loopback: bool = setting(False, boolean)
    max_auth_failures: int = setting(3, integer(1))
    stream_header_timeout: float = setting(10.0, seconds)
    auth_timeout: float = setting(60.0, seconds)
    idle_timeout: float = setting(300.0, seconds)
    ping_timeout: float = setting(60.0, seconds)
    max_send_buffer_bytes: int = setting(4_194_304, integer(65_536))
    max_roster_items: int = setting(1000, integer(1))
    max_offline_messages: int = setting(1000, integer(0))
    max_vcard_bytes: int = setting(65_536, integer(1024))
    max_private_bytes: int = setting(65_536, integer(1024))


@dataclass(frozen=True, slots=True)
class SaslConfig:
    scram_iterations: int = setting(4096, integer(4096))  # RFC 7677 §4: at least 4096


@dataclass(frozen=True, slots=True)
class TestingConfig:
    """Test-only switches, refused unless every listener is on loopback."""

    # Any password logs in, for any account name (Prosody's scansion scripts assume this).
    any_password: bool = setting(False, boolean)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """Present when the file has a [cluster] table: the node joins the cluster on `redis`."""

    node: str = derived(node_name)
    redis: str = derived(redis_url)
    lease: float = setting(8.0, seconds)  # a node silent this long is taken for dead


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """Present when the file has a [metrics] table: Prometheus metrics at /metrics."""

    port: int = derived(integer(1, 65535))
    address: str = setting("127.0.0.1", text)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    hosts: tuple[HostConfig, ...]  # in file order; the first is the default domain
    listeners: tuple[ListenerConfig, ...]
    limits: LimitsConfig = LimitsConfig()
    sasl: SaslConfig = SaslConfig()
    testing: TestingConfig = TestingConfig()
    cluster: ClusterConfig | None = None
    metrics: MetricsConfig | None = None
    source: Path | None = None  # the file this was loaded from

    def host(self, name: str) -> HostConfig | None:
        """The virtual host serving domain `name` (any case), or None."""
        name = name.lower()
        return next((h for h in self.hosts if h.name == name), None)


# --- loading -------------------------------------------------------------------------------


def load_config(path: Path | None, data_dir: Path | None = None) -> Config:
    """Read `path` (None: defaults only). `data_dir` (from --data-dir) wins over the file's."""
    raw: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from e
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from e
        base = Path(path).absolute().parent
    top = _table(raw, "", ("server", "hosts", "listeners", "limits", "sasl", "testing", "cluster",
                            "metrics"))  # fmt: skip

    server = _values(ServerConfig, top.get("server", {}), "server")
    if data_dir is not None:
        server["data_dir"] = Path(data_dir).expanduser().absolute()
    root = base / server.get("data_dir", default_data_dir())
    server["data_dir"] = root
    server.setdefault("storage", f"sqlite:///{root}/xmppd.sqlite3")
    server["admin_socket"] = base / server.get("admin_socket", root / "admin.sock")

    hosts = top.get("hosts", {"localhost": {}})
    listeners = _listeners(top.get("listeners", [{"tls": "starttls"}, {"tls": "direct"}]))
    testing = TestingConfig(**_values(TestingConfig, top.get("testing", {}), "testing"))
    if testing.any_password:
        _loopback_only(listeners)
    cluster = _cluster(top["cluster"], server["storage"]) if "cluster" in top else None
    metrics = _metrics(top["metrics"]) if "metrics" in top else None
    return Config(
        cluster=cluster,
        metrics=metrics,
        server=ServerConfig(**server),
        hosts=_hosts(_table(hosts, "hosts"), base, root),
        listeners=listeners,
        testing=testing,
        limits=LimitsConfig(**_values(LimitsConfig, top.get("limits", {}), "limits")),
        sasl=SaslConfig(**_values(SaslConfig, top.get("sasl", {}), "sasl")),
        source=None if path is None else Path(path).absolute(),
    )


def _hosts(table: dict[str, Any], base: Path, data_dir: Path) -> tuple[HostConfig, ...]:
    if not table:
        raise _fail("hosts", "at least one host is required")
    hosts: dict[str, HostConfig] = {}
    for given, raw in table.items():
        where = _join("hosts", given)
        name = given.lower()
        if not re.fullmatch(r"[^\s@/.][^\s@/]*", name) or name.endswith("."):
            raise _fail(where, "not a valid domain name")
        if name in hosts:
            raise _fail(where, f"the same domain as another host ({_show(name)})")
        if isinstance(raw, dict) and (sub := [k for k, v in raw.items() if isinstance(v, dict)]):
            raise _fail(where, f'write a domain with dots in quotes: [hosts."{given}.{sub[0]}"]')
        values = _values(HostConfig, raw, where)
        if "key" in values and "certificate" not in values:
            raise _fail(f"{where}.key", "set only together with `certificate`")
        if "certificate" in values:
            values["certificate"] = base / values["certificate"]
            values["key"] = base / values.get("key", values["certificate"])
            for key in ("certificate", "key"):
                if not values[key].is_file():
                    raise _fail(f"{where}.{key}", f"file not found: {values[key]}")
        else:
            certs = data_dir / "certs"
            values.update(certificate=certs / f"{name}.crt", key=certs / f"{name}.key")
            values["self_signed"] = True
        if not values.get("sasl_mechanisms", SASL_MECHANISMS) and not values.get("anonymous"):
            raise _fail(f"{where}.sasl_mechanisms", "empty, so nobody could log in")
        hosts[name] = HostConfig(name=name, **values)
    return tuple(hosts.values())


def _metrics(raw: Any) -> MetricsConfig:
    values = _values(MetricsConfig, raw, "metrics")
    if "port" not in values:
        raise _fail("metrics.port", "required in a [metrics] table (metrics are off without it)")
    return MetricsConfig(**values)


def _cluster(raw: Any, storage: str) -> ClusterConfig:
    values = _values(ClusterConfig, raw, "cluster")
    for key in ("node", "redis"):
        if key not in values:
            raise _fail(f"cluster.{key}", "required in a [cluster] table")
    if not storage.startswith("postgresql"):
        scheme = _show(storage.split(":")[0])
        raise _fail("server.storage", "a clustered node needs the cluster's shared database: "
                    f'set storage = "postgresql://...", not {scheme}')  # fmt: skip
    return ClusterConfig(**values)


def _listeners(raw: Any) -> tuple[ListenerConfig, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(item, dict) for item in raw):
        raise _fail("listeners", "must be one or more tables, each written [[listeners]]")
    listeners: list[ListenerConfig] = []
    for i, item in enumerate(raw):
        values = _values(ListenerConfig, item, f"listeners[{i}]")
        values.setdefault("port", DEFAULT_PORTS[values.get("tls", "starttls")])
        listener = ListenerConfig(**values)
        for j, other in enumerate(listeners):
            if listener.port and (other.address, other.port) == (listener.address, listener.port):
                where = f"{listener.address}:{listener.port}"
                raise _fail(f"listeners[{i}]", f"{where} is already used by listeners[{j}]")
        listeners.append(listener)
    return tuple(listeners)


def _loopback_only(listeners: tuple[ListenerConfig, ...]) -> None:
    import ipaddress

    for i, listener in enumerate(listeners):
        try:
            loopback = ipaddress.ip_address(listener.address).is_loopback
        except ValueError:
            loopback = listener.address == "localhost"
        if not loopback:
            raise _fail(
                "testing.any_password",
                f"refused: it lets anyone log in with any password, and listeners[{i}] "
                f"listens on {listener.address}, not on loopback (test-only setting)",
            )


def _values(cls: type, raw: Any, where: str) -> dict[str, Any]:
    """The checked values of the keys present in `raw`, a table for dataclass `cls`."""
    checks = {f.name: f.metadata["check"] for f in fields(cls) if "check" in f.metadata}
    table = _table(raw, where, checks)
    return {key: checks[key](value, _join(where, key)) for key, value in table.items()}


def _table(raw: Any, where: str, known: Collection[str] | None = None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(where, f"must be a table, got {_show(raw)}")
    if known is not None:
        for key in raw:
            if key not in known:
                message = f"unknown key {_quote(_join(where, key))}"
                if close := difflib.get_close_matches(key, known, n=1):
                    message += f" (did you mean {_quote(_join(where, close[0]))}?)"
                raise ConfigError(message)
    return raw


def _quote(key_path: str) -> str:
    return f"'{key_path}'" if '"' in key_path else f'"{key_path}"'


def _join(where: str, key: str) -> str:
    """A TOML key path: hosts."example.org".key, listeners[0].port."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = _show(key)
    return f"{where}.{key}" if where else key
