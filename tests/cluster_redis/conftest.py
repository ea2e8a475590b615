"""A real local Redis Cluster (3 masters + 3 replicas) for the ``redis+cluster://`` tests.

* ``redis_cluster`` (session): the cluster that CI started (``DIALOGUE_TEST_REDIS_CLUSTER_URL``
  and ``DIALOGUE_TEST_REDIS_CLUSTER_DIR``, see ``.ci/run``), else a private one on free
  ports, stopped after the session. Shared: tests must not kill nodes or move slots in it;
  they use their own key prefix (``cluster_prefix``).
* ``redis_cluster_private`` (function): a cluster of this test only, which it may kill
  nodes of (``kill_master``, ``restart``) and move slots in (``migrate_slot``).

Without ``redis-server`` these tests are skipped, except under ``CI=true`` where they fail.
The helpers live in ``tests/redis_cluster.py`` (``import redis_cluster``), not here:
``conftest`` module names collide between test directories.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis_cluster import LocalRedisCluster, flush_prefix, private_cluster, unavailable

CLUSTER_URL = os.environ.get("DIALOGUE_TEST_REDIS_CLUSTER_URL")
CLUSTER_DIR = os.environ.get("DIALOGUE_TEST_REDIS_CLUSTER_DIR")


@pytest.fixture(scope="session")
async def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalRedisCluster]:
    """The shared cluster: CI's (left running) or a private one of this session."""
    if CLUSTER_URL and CLUSTER_DIR:
        cluster = LocalRedisCluster.attach(Path(CLUSTER_DIR))
        problem = await cluster.problem() if cluster.ports else f"no nodes in {CLUSTER_DIR}"
        if problem is not None:
            unavailable(f"the cluster at {CLUSTER_URL} ({CLUSTER_DIR}) is not healthy: {problem}")
        yield cluster
        return
    async with private_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture
async def redis_cluster_private(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalRedisCluster]:
    """A cluster of this test only: it may kill masters and move slots."""
    async with private_cluster(tmp_path_factory.mktemp("redis-cluster-private")) as cluster:
        yield cluster


@pytest.fixture
async def cluster_prefix(redis_cluster: LocalRedisCluster) -> AsyncIterator[str]:
    """A fresh key prefix on the shared cluster; its keys are deleted after the test."""
    prefix = f"dctest{secrets.token_hex(4)}:"
    try:
        yield prefix
    finally:
        await flush_prefix(redis_cluster, prefix)
