-- Prosody, as the benchmark runs it: a foreground process on a private port, data in a
-- temporary directory, the same certificate as xmppd, nothing loaded that a login or a chat
-- message does not need but what xmppd also does on every login: offline storage (checked at
-- initial presence) and last activity (recorded at logout). `bench/servers.py` fills in the
-- @NAMES@.
run_as_root = true
daemonize = false
pidfile = "@DATA@/prosody.pid"
data_path = "@DATA@"
network_backend = "epoll"

log = {
	{ levels = { min = "warn" }, to = "file", filename = "@DATA@/prosody.log" };
}

interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }

modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "ping"; "offline"; "lastactivity";
}
modules_disabled = { "s2s"; "s2s_auth_certs"; }

authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = false

ssl = {
	certificate = "@CERT@";
	key = "@KEY@";
}

VirtualHost "localhost"
	ssl = {
		certificate = "@CERT@";
		key = "@KEY@";
	}
