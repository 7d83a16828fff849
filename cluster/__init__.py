"""The cluster: Redis session manager and route table, relay, leases and the reaper."""
