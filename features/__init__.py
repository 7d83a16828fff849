"""Server-side XMPP features, one module each, registered by what they answer."""
