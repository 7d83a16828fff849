"""The router and the session manager: where a stanza goes next."""
