"""Scraping ``/metrics`` in tests: the samples by name and labels, and waiting for a value."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample ``name{labels}`` (exactly those labels), None if absent."""
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def scrape(url: str, **kwargs: Any) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(url, **kwargs)
    assert response.status_code == 200, response.text
    return parse(response.text)


async def scrape_until(url: str, check: Callable[[Samples], bool], timeout: float = 10.0) -> Samples:
    """Scrape until ``check`` holds (the figures of other workers arrive with their samples)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(url)
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)
