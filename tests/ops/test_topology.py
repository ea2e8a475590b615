"""docker-compose.yml's topology without containers: the chat example twice
(``python examples/chat/app.py``, as the Dockerfile runs it, with the app environment of
docker-compose.yml) on the real Redis and a fresh PostgreSQL database, behind the
distribution's nginx running deploy/nginx.conf's server block (only its upstream servers
and its listen port replaced). Prometheus's part is played by scraping each app at
deploy/prometheus.yml's ``metrics_path``, directly, as Prometheus does.

Without nginx (or, for the browser test, Chromium and Playwright) these tests are
skipped, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import need_module
from metrics_helpers import Samples, parse, total, value
from ops_helpers import (
    CHAT_APP,
    COMPOSE,
    METRIC_NAME,
    PROMETHEUS_CONF,
    dashboard,
    expressions,
    load_yaml,
    nginx_for,
    scraped_metrics,
)
from pg_helpers import PG_URL, need_postgres
from redis_helpers import IN_CI, REDIS_URL, delete_prefix, free_port, need_redis
from test_metrics_exposure import outward_address

from dialogue_fastapi.testing import ProbeError, WsProbe

NGINX = "/usr/sbin/nginx"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
pytestmark = pytest.mark.timeout(120)


def need(problem: str | None) -> None:
    """Skip with ``problem`` (None: nothing missing); under CI=true fail instead."""
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"cannot run under CI: {problem}", pytrace=False)
    pytest.skip(problem)


def nginx_missing() -> str | None:
    if os.access(NGINX, os.X_OK):
        return None
    return f"{NGINX} not found: apt-get install -y nginx"


def browser_missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return 'Playwright is not installed: pip install playwright (never "playwright install")'
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} not found: apt-get install -y chromium"
    return None


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def wait_for(what: str, check: Any, proc: Process, timeout: float = 20.0) -> None:
    """Poll the async ``check()`` until true; fail with the process's log if it ended or timed out."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert proc.running(), f"{what} ended:\n{proc.tail()}"
        assert time.monotonic() < deadline, f"{what} not up after {timeout} s:\n{proc.tail()}"
        await asyncio.sleep(0.05)


class Process:
    """A child process in its own process group, its output in ``log``."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, env=env, cwd=log.parent, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def running(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its whole group (nginx's worker too) after 10 s."""
        if self.running():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


async def responds(url: str, status: int = 200) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code == status
    except httpx.HTTPError:
        return False


@dataclass
class App:
    name: str
    port: int
    proc: Process


@dataclass
class Topology:
    apps: list[App]
    lb_port: int
    lb: Process
    metrics_path: str
    scrape_host: str  # a non-loopback address of this host when it has one, as Prometheus's would be

    def metrics_url(self, app: App) -> str:
        return f"http://{self.scrape_host}:{app.port}{self.metrics_path}"

    def lb_url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.lb_port}"

    async def scrape(self) -> list[Samples]:
        """Each app's metrics, scraped directly (never through nginx)."""
        async with httpx.AsyncClient(timeout=5) as client:
            texts = []
            for app in self.apps:
                response = await client.get(self.metrics_url(app))
                assert response.status_code == 200, response.text
                texts.append(response.text)
        return [parse(text) for text in texts]


async def _admin(sql: str) -> None:
    asyncpg: Any = importlib.import_module("asyncpg")
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def app_environment(broker: str, database: str) -> dict[str, str]:
    """docker-compose.yml's environment of the app instances, with this host's services.

    DIALOGUE_ALLOWED_ORIGINS is left out: the pages must pass the same-origin check through
    nginx's ``$http_host`` alone."""
    compose = load_yaml(COMPOSE)
    envs = [s["environment"] for s in compose["services"].values() if s.get("build") == "."]
    assert envs and all(e == envs[0] for e in envs), "the app instances share one environment"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DIALOGUE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({k: str(v) for k, v in envs[0].items() if k != "DIALOGUE_ALLOWED_ORIGINS"})
    env.update(DIALOGUE_BROKER_URL=broker, DIALOGUE_DATABASE_URL=database,
               HOST="0.0.0.0", PYTHONUNBUFFERED="1")  # HOST as the Dockerfile sets it
    return env


@pytest.fixture(scope="module")
async def topology(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    need_module("yaml", "pyyaml")
    need(nginx_missing())
    await need_redis()
    await need_postgres()
    tmp = tmp_path_factory.mktemp("topology")
    database = f"dops_{secrets.token_hex(4)}"
    prefix = f"dops{secrets.token_hex(4)}:"
    base, _, _ = PG_URL.rpartition("/")
    env = app_environment(f"{REDIS_URL}?prefix={prefix}", f"{base}/{database}")
    metrics_path = load_yaml(PROMETHEUS_CONF)["scrape_configs"][0]["metrics_path"]
    started: list[Process] = []
    await _admin(f"CREATE DATABASE {database}")
    try:
        apps = []
        for name in ("app1", "app2"):
            port = free_port()
            proc = Process([sys.executable, str(CHAT_APP)], tmp / f"{name}.log", {**env, "PORT": str(port)})
            started.append(proc)
            apps.append(App(name, port, proc))
        for app in apps:
            await wait_for(app.name, lambda app=app: responds(f"http://127.0.0.1:{app.port}/dialogue/ready"),
                           app.proc, timeout=30)
            if not await responds(f"http://127.0.0.1:{app.port}{metrics_path}"):
                pytest.fail(f"examples/chat/app.py serves no metrics at {metrics_path} with "
                            "docker-compose.yml's app environment (CHAT_METRICS=1)", pytrace=False)

        lb_port = free_port()
        listens = [f"127.0.0.1:{lb_port}"] + ([f"[::1]:{lb_port}"] if ipv6_loopback() else [])
        conf = tmp / "nginx.conf"
        conf.write_text(nginx_for([app.port for app in apps], listens, tmp))
        lb = Process([NGINX, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")],
                     tmp / "nginx.log")
        started.append(lb)
        await wait_for("nginx", lambda: responds(f"http://127.0.0.1:{lb_port}/"), lb)
        yield Topology(apps, lb_port, lb, metrics_path, outward_address() or "127.0.0.1")
    finally:
        for proc in started:
            proc.stop()
        await delete_prefix(prefix)
        await _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def changes(before: list[Samples], after: list[Samples], name: str, **labels: str) -> list[float]:
    """Per app: how much the sum of ``name{labels...}`` grew."""
    return [total(a, name, **labels) - total(b, name, **labels) for b, a in zip(before, after, strict=True)]


async def scrape_until(topology: Topology, check: Any, timeout: float = 10.0) -> list[Samples]:
    """Scrape both apps until ``check(samples)`` holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await topology.scrape()
        if check(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_scraping_each_app_directly_counts_the_traffic_sent_through_nginx(
    topology: Topology,
) -> None:
    before = await topology.scrape()
    ws_url = f"ws://127.0.0.1:{topology.lb_port}/dialogue/ws?token="
    clients: list[WsProbe] = []
    placed: list[int] = []  # the app each client landed on
    try:
        for i in range(4):
            clients.append(await WsProbe.open(f"{ws_url}ops{i}"))

            def accepted(samples: list[Samples], count: int = i + 1) -> bool:
                grown = changes(before, samples, "dialogue_connections_accepted_total", transport="websocket")
                return sum(grown) == count

            now = await scrape_until(topology, accepted)
            grown = changes(before, now, "dialogue_connections_accepted_total", transport="websocket")
            assert sum(grown) == i + 1, grown
            placed.append(next(n for n in range(2) if grown[n] > placed.count(n)))
        assert sorted(set(placed)) == [0, 1], f"nginx sent every connection to one app: {placed}"

        for client in clients:
            await client.request("join", room="random")
        counts = [1, 2, 3, 4]  # events each client publishes: every app's share is its own
        sent = sum(counts)
        for client, count in zip(clients, counts, strict=True):
            for j in range(count):
                await client.request("publish", room="random", event="message", data={"text": f"m{j}"})
        with pytest.raises(ProbeError) as refused:
            await clients[0].request("publish", room="random", event="message", data={"text": ""})
        assert refused.value.code == "VALIDATION_FAILED"
        for client in clients:  # every member got every event, from both apps
            texts = [e["data"]["text"] for e in await client.events(sent, timeout=10)]
            assert len(texts) == sent

        def settled(samples: list[Samples]) -> bool:
            return (sum(changes(before, samples, "dialogue_events_total")) == sent
                    and sum(changes(before, samples, "dialogue_store_written_total")) == sent
                    and sum(total(s, "dialogue_store_queue_depth") for s in samples) == 0)

        after = await scrape_until(topology, settled)
        # each app counts what was published on it, and nothing twice: the sum is the traffic
        per_app = [sum(c for c, n in zip(counts, placed, strict=True) if n == app) for app in range(2)]
        assert changes(before, after, "dialogue_events_total", room="random", event="message") == per_app
        assert sum(changes(before, after, "dialogue_events_total")) == sent
        assert sum(changes(before, after, "dialogue_events_latency_seconds_count")) == sent
        assert sum(changes(before, after, "dialogue_broker_publish_duration_seconds_count")) == sent
        assert changes(before, after, "dialogue_store_written_total") == per_app
        assert sum(changes(before, after, "dialogue_commands_total", op="publish", code="ok")) == sent
        assert sum(changes(before, after, "dialogue_commands_total", op="join", code="ok")) == len(clients)
        assert sum(changes(before, after, "dialogue_publish_refusals_total", code="VALIDATION_FAILED")) == 1
        assert sum(changes(before, after, "dialogue_messages_delivered_total", transport="websocket")) == (
            sent * len(clients))
        assert sum(changes(before, after, "dialogue_connection_refusals_total")) == 0
        assert [total(s, "dialogue_rooms_size", room="random") for s in after] == [
            placed.count(0), placed.count(1)]
        for samples in after:
            assert value(samples, "dialogue_broker_subscriber_up") == 1
            assert value(samples, "dialogue_store_dead_letters") == 0
    finally:
        for client in clients:
            await client.close()

    def left(samples: list[Samples]) -> bool:
        return sum(changes(before, samples, "dialogue_connections_closed_total", code="client")) == 4

    after = await scrape_until(topology, left)
    assert sum(changes(before, after, "dialogue_connections_closed_total", code="client")) == 4


async def test_every_metric_on_the_dashboard_is_in_each_apps_scrape(topology: Topology) -> None:
    wanted = {name for expr in expressions(dashboard()) for name in METRIC_NAME.findall(expr)}
    # the compose apps run without push (each container would make its own VAPID key): the
    # push panels stay empty there; tests/test_push_dispatch.py scrapes the push metrics
    wanted = {name for name in wanted if not name.startswith("dialogue_push_")}
    async with httpx.AsyncClient(timeout=5) as client:
        for app in topology.apps:
            response = await client.get(topology.metrics_url(app))
            assert response.status_code == 200, response.text
            missing = wanted - scraped_metrics(response.text)
            assert not missing, f"{app.name} does not expose {sorted(missing)}"


async def test_metrics_are_served_to_other_hosts_but_not_through_nginx(topology: Topology) -> None:
    outward = outward_address()
    need(None if outward else "this host has no non-loopback address to scrape the apps from")
    async with httpx.AsyncClient(timeout=5) as client:
        for app in topology.apps:  # what the prometheus container does: not a loopback request
            response = await client.get(f"http://{outward}:{app.port}{topology.metrics_path}")
            assert response.status_code == 200, response.text
            assert "dialogue_connections_active" in response.text
        for path in (topology.metrics_path, topology.metrics_path + "/", topology.metrics_path + "?x=1",
                     topology.metrics_path.replace("/metrics", "/%6Detrics"), "/" + topology.metrics_path):
            response = await client.get(topology.lb_url() + path)
            assert response.status_code == 404, (path, response.status_code)
            assert "dialogue_" not in response.text, path
        assert (await client.get(topology.lb_url() + "/dialogue/ready")).status_code == 200


async def test_the_chat_page_works_through_nginx_at_localhost_and_127_0_0_1(topology: Topology) -> None:
    need(browser_missing())
    from playwright.async_api import Page, async_playwright, expect

    before = await topology.scrape()
    errors: list[str] = []

    def recorder(name: str) -> Callable[[Any], None]:
        return lambda exc: errors.append(f"{name}: {exc}")

    async def sign_in(page: Page, name: str) -> None:
        await page.fill("#name-input", name)
        await page.click("#login-button")
        await expect(page.locator("#app")).to_be_visible()
        await expect(page.locator("#room-list .room.active")).to_have_attribute("data-room-id", "lobby")

    async def send(page: Page, text: str) -> None:
        await page.fill("#message-input", text)
        await page.press("#message-input", "Enter")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages: list[Page] = []
            for name, host in (("alice", "localhost"), ("bob", "127.0.0.1")):
                context = await browser.new_context()
                page = await context.new_page()
                page.on("pageerror", recorder(name))
                await page.goto(topology.lb_url(host) + "/")
                await sign_in(page, name)  # the WebSocket passed the same-origin check
                pages.append(page)
            alice, bob = pages
            for page in pages:  # presence spans both apps
                for user in ("alice", "bob"):
                    await expect(page.locator(f'#presence-list [data-user-id="{user}"]')).to_be_visible()
            await send(alice, "sent from localhost")
            await expect(bob.locator("#messages .message .text")).to_have_text(["sent from localhost"])
            await send(bob, "sent from 127.0.0.1")
            for page in pages:
                await expect(page.locator("#messages .message .text")).to_have_text(
                    ["sent from localhost", "sent from 127.0.0.1"])
        finally:
            await browser.close()
    assert not errors, f"uncaught errors in the pages: {errors}"
    after = await topology.scrape()
    assert sum(changes(before, after, "dialogue_connection_refusals_total")) == 0  # no Origin refusal
    assert sum(changes(before, after, "dialogue_events_total", room="lobby", event="message")) == 2
