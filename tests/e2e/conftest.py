"""Fixtures: a shared xmppd node with a few accounts, and a fresh one for tests that end it."""

from __future__ import annotations

import pytest

from tests.support.server import make_server

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    node = make_server(tmp_path_factory.mktemp("shared"))
    node.add_users(**USERS)
    node.start()
    yield node
    node.stop()
    assert not node.unexpected_tracebacks(), node.unexpected_tracebacks()[0]


@pytest.fixture
def fresh_server(tmp_path):
    """A node of the test's own, for tests that stop, signal or flood it."""
    node = make_server(tmp_path)
    node.add_users(**USERS)
    yield node
    node.stop()
    assert not node.unexpected_tracebacks(), node.unexpected_tracebacks()[0]


@pytest.fixture
def configured_server(tmp_path):
    """Start a node of the test's own with more configuration: `configured_server(limits=...,
    host=..., extra_config=...)` takes make_server's TOML keywords; each call is a new node."""
    nodes = []

    def start(**config: str):
        node = make_server(tmp_path / f"node{len(nodes)}", **config)
        node.add_users(**USERS)
        nodes.append(node)
        node.start()
        return node

    yield start
    for node in nodes:
        node.stop()
    for node in nodes:
        assert not node.unexpected_tracebacks(), node.unexpected_tracebacks()[0]
