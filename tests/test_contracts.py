"""The shared contract suites, run on the built-in implementations."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis_helpers import fresh_redis_broker

from dialogue_fastapi.brokers import MemoryBroker
from dialogue_fastapi.stores import MemoryStore
from dialogue_fastapi.testing import BrokerContract, FullStoreContract


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[MemoryBroker]:
        yield MemoryBroker()


class TestMemoryStore(FullStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        yield MemoryStore()


class TestRedisBroker(BrokerContract):
    """The same contract on the real Redis (``DIALOGUE_TEST_REDIS_URL``)."""

    @pytest.fixture
    async def broker(self) -> AsyncIterator[Any]:
        async with fresh_redis_broker() as broker:
            yield broker
