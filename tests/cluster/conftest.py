"""Cluster tests: real uvicorn processes sharing the real Redis.

A test module sets ``NODES = <n>`` and uses the ``cluster`` fixture: its nodes
are started once per module (concurrently), on one key prefix of its own,
stopped and their keys deleted after the module. Each test gets fresh clients
(closed after it) and fails if a node is not running before or after it.

Helpers are imported as top-level modules, like the rest of the suite:
pytest's default (prepend) import mode puts this directory on ``sys.path``
(``nodes``, ``cluster_app``), and ``tests/conftest.py`` puts ``tests/`` there
(``redis_helpers``).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from nodes import Cluster, NodeProcess, node_env, start_all, stop_all
from redis_helpers import REDIS_URL, delete_prefix, need_redis


@pytest.fixture(scope="module")
async def cluster_nodes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    await need_redis()
    size = int(getattr(request.module, "NODES", 2))
    prefix = f"dcluster{secrets.token_hex(4)}:"
    log_dir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    env = node_env(REDIS_URL, prefix)
    nodes = [NodeProcess(f"node{chr(ord('A') + i)}", env, log_dir) for i in range(size)]
    try:
        await start_all(nodes)
        yield Cluster(prefix, REDIS_URL, nodes)
    finally:
        await stop_all(nodes)
        await delete_prefix(prefix)


@pytest.fixture
async def cluster(cluster_nodes: Cluster) -> AsyncIterator[Cluster]:
    cluster_nodes.check_running()
    try:
        yield cluster_nodes
    finally:
        await cluster_nodes.close_clients()
    cluster_nodes.check_running()  # a node that crashed during the test fails it, with its output
