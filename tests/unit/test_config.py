"""The TOML configuration: defaults with no file, a full file, and errors that name the key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from xmppd.config import (
    SASL_MECHANISMS,
    ClusterConfig,
    Config,
    ConfigError,
    HostConfig,
    LimitsConfig,
    ListenerConfig,
    MetricsConfig,
    SaslConfig,
    ServerConfig,
    load_config,
)
from xmppd.paths import default_data_dir

EXAMPLE = Path(__file__).resolve().parents[2] / "xmppd.example.toml"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and no XDG_DATA_HOME, so defaults never point at the real user's files."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    return home


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "xmppd.toml"
    path.write_text(text)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    return str(raised.value)


def test_default_data_dir_follows_xdg(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_data_dir() == home / ".local" / "share" / "xmppd"
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    assert default_data_dir() == Path("/srv/data/xmppd")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
    assert default_data_dir() == home / ".local" / "share" / "xmppd"


def test_no_file_gives_a_single_localhost_node(home: Path) -> None:
    config = load_config(None)
    data = home / ".local" / "share" / "xmppd"
    assert config.server == ServerConfig(
        data_dir=data,
        storage=f"sqlite:///{data}/xmppd.sqlite3",
        log_level="info",
        log_format="text",
        admin_socket=data / "admin.sock",
    )
    assert config.hosts == (
        HostConfig(
            name="localhost",
            certificate=data / "certs" / "localhost.crt",
            key=data / "certs" / "localhost.key",
            sasl_mechanisms=SASL_MECHANISMS,
            anonymous=False,
            self_signed=True,
        ),
    )
    assert config.listeners == (
        ListenerConfig(address="127.0.0.1", port=5222, tls="starttls", type="c2s"),
        ListenerConfig(address="127.0.0.1", port=5223, tls="direct", type="c2s"),
    )
    assert config.limits == LimitsConfig()
    assert config.limits.max_stanza_bytes == 262_144
    assert config.limits.max_connections_per_ip == 100
    assert config.limits.idle_timeout == 300.0
    assert config.sasl == SaslConfig(scram_iterations=4096)
    assert config.source is None


def test_data_dir_from_the_command_line_wins(tmp_path: Path) -> None:
    path = write(tmp_path, '[server]\ndata_dir = "from-file"\n')
    assert load_config(path).server.data_dir == tmp_path / "from-file"
    config = load_config(path, data_dir=tmp_path / "cli")
    assert config.server.data_dir == tmp_path / "cli"
    assert config.server.storage == f"sqlite:///{tmp_path}/cli/xmppd.sqlite3"
    assert config.server.admin_socket == tmp_path / "cli" / "admin.sock"
    assert config.host("localhost").certificate == tmp_path / "cli" / "certs" / "localhost.crt"
    assert load_config(None, data_dir=tmp_path / "x").server.data_dir == tmp_path / "x"


def test_a_full_file(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    for name in ("example.org.pem", "example.org.key", "chat.example.net.pem"):
        (tmp_path / "tls" / name).write_text("placeholder: only existence is checked here")
    config = load(
        tmp_path,
        """
        [server]
        data_dir = "/var/lib/xmppd"
        storage = "postgresql+psycopg://xmppd@db/xmppd"
        log_level = "debug"
        log_format = "json"
        admin_socket = "run/admin.sock"

        [hosts."Example.ORG"]
        certificate = "tls/example.org.pem"
        key = "tls/example.org.key"
        sasl_mechanisms = ["scram-sha-256-plus", "SCRAM-SHA-256"]

        [hosts."chat.example.net"]
        certificate = "tls/chat.example.net.pem"
        anonymous = true
        sasl_mechanisms = []

        [[listeners]]
        address = "::"
        tls = "starttls-optional"

        [[listeners]]
        address = "0.0.0.0"
        port = 443
        tls = "direct"
        type = "c2s"

        [limits]
        max_stanza_bytes = 65536
        max_bytes_per_second = 20000
        burst_bytes = 100000
        max_sessions_per_account = 3
        max_connections_per_ip = 20000
        exempt_loopback = true
        max_auth_failures = 5
        stream_header_timeout = 2.5
        auth_timeout = 30
        idle_timeout = 120
        ping_timeout = 15

        [sasl]
        scram_iterations = 10000
        """.replace("\n        ", "\n"),
    )
    assert config.source == tmp_path / "xmppd.toml"
    assert config.server == ServerConfig(
        data_dir=Path("/var/lib/xmppd"),
        storage="postgresql+psycopg://xmppd@db/xmppd",
        log_level="debug",
        log_format="json",
        admin_socket=tmp_path / "run" / "admin.sock",  # relative to the file's directory
    )
    example, chat = config.hosts
    assert example == HostConfig(
        name="example.org",
        certificate=tmp_path / "tls" / "example.org.pem",
        key=tmp_path / "tls" / "example.org.key",
        sasl_mechanisms=("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"),
        anonymous=False,
        self_signed=False,
    )
    assert chat.key == chat.certificate == tmp_path / "tls" / "chat.example.net.pem"
    assert chat.offered_mechanisms == ("ANONYMOUS",)
    assert config.host("EXAMPLE.org") is example
    assert config.host("localhost") is None
    assert config.listeners == (
        ListenerConfig(address="::", port=5222, tls="starttls-optional", type="c2s"),
        ListenerConfig(address="0.0.0.0", port=443, tls="direct", type="c2s"),
    )
    assert config.limits == LimitsConfig(
        max_stanza_bytes=65536,
        max_bytes_per_second=20000,
        burst_bytes=100000,
        max_sessions_per_account=3,
        max_connections_per_ip=20000,
        exempt_loopback=True,
        max_auth_failures=5,
        stream_header_timeout=2.5,
        auth_timeout=30.0,
        idle_timeout=120.0,
        ping_timeout=15.0,
    )
    assert config.sasl.scram_iterations == 10000


def test_config_is_frozen() -> None:
    config = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_stanza_bytes = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[listeners]]\nport = 5222\n[[listeners]]\ntls = "foo"',
            'listeners[1].tls: must be one of "starttls", "starttls-optional", "direct", got "foo"',
        ),
        (
            "[[listeners]]\nport = 70000",
            "listeners[0].port: must be between 0 and 65535, got 70000",
        ),
        ("[[listeners]]\nport = -1", "listeners[0].port: must be between 0 and 65535, got -1"),
        ('[[listeners]]\nport = "5222"', 'listeners[0].port: must be an integer, got "5222"'),
        ("[[listeners]]\nport = true", "listeners[0].port: must be an integer, got true"),
        ('[[listeners]]\ntype = "s2s"', 'listeners[0].type: must be one of "c2s", got "s2s"'),
        ("[[listeners]]\naddress = 127", "listeners[0].address: must be a non-empty string"),
        ("listeners = []", "listeners: must be one or more tables"),
        ("[listeners]\nport = 1", "listeners: must be one or more tables"),
        (
            "[[listeners]]\nport = 5222\n[[listeners]]\nport = 5222",
            "listeners[1]: 127.0.0.1:5222 is already used by listeners[0]",
        ),
        (
            "[limits]\nmax_sessions_per_account = -1",
            "limits.max_sessions_per_account: must be at least 1, got -1",
        ),
        ("[limits]\nmax_stanza_bytes = 1000", "limits.max_stanza_bytes: must be at least 10000"),
        ("[limits]\nidle_timeout = -5", "limits.idle_timeout: must be a number of seconds above 0"),
        (
            '[limits]\nping_timeout = "1m"',
            'limits.ping_timeout: must be a number of seconds above 0, got "1m"',
        ),
        (
            '[limits]\nexempt_loopback = "yes"',
            'limits.exempt_loopback: must be true or false, got "yes"',
        ),
        ("[sasl]\nscram_iterations = 1000", "sasl.scram_iterations: must be at least 4096"),
        ('[server]\nlog_level = "verbose"', 'server.log_level: must be one of "debug", "info"'),
        ('[server]\nlog_format = "xml"', 'server.log_format: must be one of "text", "json"'),
        (
            '[server]\nstorage = "mysql://db/x"',
            "server.storage: must be a URL starting with one of",
        ),
        ('[server]\ndata_dir = ""', "server.data_dir: must be a non-empty string"),
        ("server = 5", "server: must be a table, got 5"),
        (
            '[hosts."example.org"]\nsasl_mechanisms = ["SCRAM-SHA-1", "DIGEST-MD5"]',
            'hosts."example.org".sasl_mechanisms[1]: must be one of "SCRAM-SHA-512-PLUS"',
        ),
        (
            '[hosts."example.org"]\nsasl_mechanisms = ["ANONYMOUS"]',
            'hosts."example.org".sasl_mechanisms[0]: ANONYMOUS is enabled with `anonymous = true`',
        ),
        (
            '[hosts."example.org"]\nsasl_mechanisms = "PLAIN"',
            'hosts."example.org".sasl_mechanisms: must be an array of SASL mechanism names',
        ),
        (
            '[hosts."example.org"]\nsasl_mechanisms = []',
            'hosts."example.org".sasl_mechanisms: empty, so nobody could log in',
        ),
        ("[hosts.localhost]\nanonymous = 1", "hosts.localhost.anonymous: must be true or false"),
        (
            '[hosts."example.org"]\ncertificate = "missing.pem"',
            'hosts."example.org".certificate: file not found: ',
        ),
        (
            '[hosts."example.org"]\nkey = "some.key"',
            'hosts."example.org".key: set only together with `certificate`',
        ),
        (
            "[hosts.example.org]",
            'hosts.example: write a domain with dots in quotes: [hosts."example.org"]',
        ),
        ('[hosts."a@b"]', 'hosts."a@b": not a valid domain name'),
        ("hosts = {}", "hosts: at least one host is required"),
        ("[hosts.Localhost]\n[hosts.localhost]", "hosts.localhost: the same domain as another"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert error(tmp_path, text).startswith(message)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[limits]\nmax_stanza_size = 1",
            'unknown key "limits.max_stanza_size" (did you mean "limits.max_stanza_bytes"?)',
        ),
        ("[[listener]]\nport = 1", 'unknown key "listener" (did you mean "listeners"?)'),
        ("[[listeners]]\nproto = 1", 'unknown key "listeners[0].proto"'),
        ("[server]\nfrobnicate = 1", 'unknown key "server.frobnicate"'),
        (
            '[hosts."example.org"]\ncertficate = "x"',
            """unknown key 'hosts."example.org".certficate' """
            """(did you mean 'hosts."example.org".certificate'?)""",
        ),
        ("[sasl]\niterations = 1", 'unknown key "sasl.iterations" (did you mean'),
    ],
)
def test_unknown_keys_are_named(tmp_path: Path, text: str, message: str) -> None:
    assert error(tmp_path, text).startswith(message)


def test_unknown_key_without_a_near_one_suggests_nothing(tmp_path: Path) -> None:
    assert error(tmp_path, "[server]\nfrobnicate = 1") == 'unknown key "server.frobnicate"'


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")
    assert "not valid TOML" in error(tmp_path, "[server\n")


def test_the_example_config_loads_as_the_defaults() -> None:
    config = load_config(EXAMPLE)
    assert dataclasses.replace(config, source=None) == load_config(None)


def test_the_example_config_states_the_real_defaults(tmp_path: Path) -> None:
    """Uncommenting every `#key = value` line (but the example paths and URL, and the
    [cluster] table, which makes a clustered node) changes nothing."""
    examples_only = ("certificate", "key", "storage", "admin_socket")
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        if line == "#[cluster]":
            break
        setting = re.match(r"#(\[.*\]|(\w+) = .*)$", line)
        if setting and setting.group(2) not in examples_only:
            line = line[1:]
        lines.append(line)
    config = load(tmp_path, "\n".join(lines))
    assert dataclasses.replace(config, source=None) == load_config(None)


def test_the_example_config_documents_every_key() -> None:
    text = EXAMPLE.read_text()
    for cls in (ServerConfig, HostConfig, ListenerConfig, LimitsConfig, SaslConfig,
                ClusterConfig):  # fmt: skip
        for field in dataclasses.fields(cls):
            if "check" in field.metadata:
                assert f"#{field.name} = " in text, f"{cls.__name__}.{field.name} undocumented"


CLUSTERED = '[server]\nstorage = "postgresql://xmppd@db/xmppd"\n'


def test_a_cluster_table_makes_a_clustered_node(tmp_path: Path) -> None:
    config = load(tmp_path, CLUSTERED + '[cluster]\nnode = "n1"\nredis = "redis://r:6379/2"\n')
    assert config.cluster == ClusterConfig(node="n1", redis="redis://r:6379/2", lease=8.0)
    assert load_config(None).cluster is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('node = "n 1"\nredis = "redis://r/0"', "cluster.node: must be 1 to 64 letters"),
        ('node = "n1"\nredis = "http://r/0"', "cluster.redis: must be a redis://"),
        ('node = "n1"\nredis = "redis+cluster://r:7000/1"', "cluster.redis: Redis Cluster has"),
        ('redis = "redis://r/0"', "cluster.node: required"),
        ('node = "n1"\nredis = "redis://r/0"\nlease = 0', "cluster.lease: must be a number"),
        ('node = "n1"\nredis = "redis://r/0"\nleases = 3', 'unknown key "cluster.leases"'),
    ],
)
def test_a_bad_cluster_table_is_refused_by_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load(tmp_path, CLUSTERED + "[cluster]\n" + table + "\n")


def test_a_clustered_node_on_sqlite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server.storage: a clustered node needs the cluster's"):
        load(tmp_path, '[cluster]\nnode = "n1"\nredis = "redis://r/0"\n')


def test_metrics_are_off_unless_a_port_is_set(tmp_path):
    assert load(tmp_path, "").metrics is None
    assert load(tmp_path, "[metrics]\nport = 9100\n").metrics == MetricsConfig(
        port=9100, address="127.0.0.1")  # fmt: skip
    with pytest.raises(ConfigError, match="metrics.port: required"):
        load(tmp_path, '[metrics]\naddress = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match="metrics.port: must be between 1 and 65535"):
        load(tmp_path, "[metrics]\nport = 70000\n")
