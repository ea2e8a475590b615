"""Fixtures for the push sender tests: the fake push services and a clock tests can move."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.clock import Clock
from fakes.fcm import FakeFcm
from fakes.tls import Tls, make_tls


@pytest.fixture(params=["aiohttp", "httpx"])
def webpush_transport(request: pytest.FixtureRequest) -> str:
    """Each Web Push sender test runs on both of the sender's HTTP transports."""
    transport: str = request.param
    return transport


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fcm_service() -> Iterator[FakeFcm]:
    fake = FakeFcm()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory: Path = tmp_path_factory.mktemp("apns-tls")
    return make_tls(directory)
