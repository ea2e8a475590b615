"""The shared contract suites, run on the built-in implementations."""

from collections.abc import AsyncIterator

import pytest

from dialogue_fastapi.brokers import MemoryBroker
from dialogue_fastapi.stores import MemoryStore
from dialogue_fastapi.testing import BrokerContract, EventStoreContract


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    async def broker(self) -> AsyncIterator[MemoryBroker]:
        yield MemoryBroker()


class TestMemoryStore(EventStoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        yield MemoryStore()
