"""The cluster's Redis URLs: one server, Sentinel and Redis Cluster, parsed by xmppd itself."""

from __future__ import annotations

import pytest

from cluster.connect import RedisTarget, parse, same_run


def test_a_plain_redis_url_goes_to_redis_py_as_it_is():
    assert parse("redis://r:6379/2") == RedisTarget("redis", "redis://r:6379/2")
    assert parse("unix:///run/redis.sock?db=1").scheme == "unix"


def test_sentinel_names_the_sentinels_the_master_and_the_database():
    url = "redis+sentinel://:s%40cret@h1:26379,h2,[::1]:26380/mymaster/3"
    target = parse(url)
    assert target.hosts == (("h1", 26379), ("h2", 26379), ("::1", 26380))
    assert (target.master, target.db, target.password, target.username) == (
        "mymaster", 3, "s@cret", None)  # fmt: skip
    assert parse("redis+sentinel://h1/m").db == 0


def test_redis_cluster_takes_seeds_and_only_database_0():
    target = parse("redis+cluster://h1:7000,h2:7001")
    assert target.hosts == (("h1", 7000), ("h2", 7001))
    assert parse("redis+cluster://h1:7000/0").db == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://r/0", "must be a redis://"),
        ("redis+sentinel://h1:26379", "/MASTER"),
        ("redis+sentinel://h1:26379/m/x", "database must be a number"),
        ("redis+sentinel://h1:port/m", "host:port expected"),
        ("redis+cluster://h1:7000/2", "only database 0"),
        ("redis+cluster://h1:7000,/0", "host:port expected"),
    ],
)
def test_bad_urls_are_refused_saying_why(url, says):
    with pytest.raises(ValueError, match=says):
        parse(url)


def test_a_key_s_server_belongs_to_the_run_when_its_id_is_one_of_the_masters():
    assert same_run("b", "a,b,c")
    assert not same_run("d", "a,b,c")
    assert not same_run(None, "a")
