"""Persistence behind small store interfaces; implementations chosen by URL in xmppd/."""
