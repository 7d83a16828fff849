"""Load generator and benchmark scenarios: `python -m bench run --against xmppd,prosody`."""
