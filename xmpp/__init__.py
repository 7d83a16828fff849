"""Pure XMPP protocol primitives: JIDs, the stream parser, errors, SASL."""
