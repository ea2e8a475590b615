"""benchmarks/capacity.py: the model's arithmetic on a tiny scenario, computed by hand."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "capacity.py"


@pytest.fixture(scope="module")
def cap():
    spec = importlib.util.spec_from_file_location("capacity_model", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_nodes_per_room(cap) -> None:
    assert cap.nodes_per_room(1, 7) == pytest.approx(1.0)  # one member: one node
    assert cap.nodes_per_room(50, 1) == pytest.approx(1.0)  # one node holds everyone
    # two members on n nodes share one with probability 1/n: 2 - 1/n distinct nodes
    assert cap.nodes_per_room(2, 4) == pytest.approx(1.75)
    # 3 members on 2 nodes: all on one node with probability 2 * (1/2)^3 = 1/4 -> 1*1/4 + 2*3/4
    assert cap.nodes_per_room(3, 2) == pytest.approx(1.75)
    assert cap.nodes_per_room(100, 4) == pytest.approx(4.0)  # 4 * (1 - 0.75^100)


def test_plan_by_hand(cap) -> None:
    costs = cap.Costs(deliver_us=100, publish_us=500, receive_us=1000, conn_us_per_s=200, conn_kib=40,
                      redis_publish_us=30, redis_node_us=4)
    scenario, overrides = cap.scenario_of({
        "name": "tiny", "connections": 1000, "target_cpu": 0.25, "node_memory_mib": 20,
        "redis_target_cpu": 0.004,
        "rooms": [
            {"size": 2, "share": 0.5, "rate_per_member": 0.5},  # 1000 * 0.5 / 2 = 250 rooms at 1/s
            {"size": 100, "rooms": 5, "rate": 2},  # 5 rooms at 2/s
        ],
    })
    assert overrides == {}
    assert [(b.size, b.rooms, b.rate) for b in scenario.buckets] == [(2, 250, 1.0), (100, 5, 2.0)]
    p = cap.plan(scenario, costs)
    # publishes: 250 * 1 + 5 * 2 = 260/s; deliveries: 250 * 1 * 2 + 5 * 2 * 100 = 1500/s
    assert p.publishes_per_s == pytest.approx(260)
    assert p.deliveries_per_s == pytest.approx(1500)
    # fixed CPU (cores): deliveries 1500 * 100 us = 0.15, publishes 260 * 500 us = 0.13,
    # connections 1000 * 200 us = 0.2: 0.48 before the pub/sub receives, which depend on n.
    # n=1: every room on one node, 260 receives * 1000 us = 0.26 -> 0.74 / 0.25 = 2.96 -> 3
    # n=3: m(2,3) = 2 - 1/3 = 5/3, m(100,3) = 3: 250 * 5/3 + 10 * 3 = 446.7/s -> 0.9267 / 0.25 -> 4
    # n=4: m(2,4) = 1.75, m(100,4) = 4: 437.5 + 40 = 477.5/s -> 0.9575 / 0.25 = 3.83 -> 4: stable
    assert p.node_messages_per_s == pytest.approx(477.5)
    assert p.nodes_per_room == pytest.approx(477.5 / 260)
    assert p.app_cpu_split == pytest.approx(
        {"deliveries": 0.15, "publishes": 0.13, "receives": 0.4775, "connections": 0.2})
    assert p.app_cpu_cores == pytest.approx(0.9575)
    # memory: 1000 * 40 KiB = 40,000 KiB over 20 MiB = 20,480 KiB per process -> 1.95 -> 2
    assert (p.processes_cpu, p.processes_memory, p.processes) == (4, 2, 4)
    # Redis: 260 * 30 us + 477.5 * 4 us = 7800 + 1910 = 9710 us/s = 0.00971 cores; / 0.004 -> 3
    assert p.redis_cpu_cores == pytest.approx(0.00971)
    assert p.shards == 3
    # busiest room: a 100-room, 2/s * (30 + 4 nodes * 4 us) = 92 us/s, of a 4,000 us/s budget
    assert p.hottest_room_shard_share == pytest.approx(92 / 4000)


def test_memory_bound(cap) -> None:
    # no traffic: 10,000 connections * 50 KiB = 500,000 KiB over 100 MiB (102,400 KiB) -> 4.88 -> 5;
    # CPU 10,000 * 10 us = 0.1 core -> 1 process
    costs = cap.Costs(deliver_us=1, publish_us=1, receive_us=1, conn_us_per_s=10, conn_kib=50,
                      redis_publish_us=1, redis_node_us=1)
    scenario = cap.Scenario("idle", 10_000, (), node_memory_mib=100)
    p = cap.plan(scenario, costs)
    assert (p.processes_cpu, p.processes_memory, p.processes, p.shards) == (1, 5, 5, 1)
    assert p.publishes_per_s == 0 and p.nodes_per_room == 0


def test_publish_cost_from_the_cluster_split(cap) -> None:
    # Both nodes receive every publish and deliver to 50 subscribers; node A also runs the publish
    # path. 100,000 deliveries/s at N=100 -> 1,000 publishes/s; A - B = 0.50 - 0.40 = 0.10 core
    # -> 100 us per publish (the deliveries cancel: 50,000/s on each node).
    # Redis: 0.05 core / 1,000 = 50 us per publish with 2 subscribed nodes; with the per-node estimate
    # (3 us) the script is 50 - 2 * 3 = 44 us.
    med = {"deliv_per_s@100": 100_000, "same_deliv_per_s@100": 50_000, "other_deliv_per_s@100": 50_000,
           "node_a_util@100": 0.50, "node_b_util@100": 0.40, "redis_util@100": 0.05}
    figs = cap.from_cluster([("run", {"args": {"on_node_a": 0.5}, "medians": {"cluster": med}})], 20.0)
    assert figs["publish_us"].value == pytest.approx(100)
    assert figs["redis_publish_us"].value == pytest.approx(44)
    assert figs["redis_publish_us"].estimate
    assert "receive_us" not in figs  # 50 deliveries per publish on node B: too many to separate
    # 99 subscribers on A, 1 on B (--on-node-a 0.99), 100 publishes/s, deliver_us 20 us, built from
    # publish 100 us and receive 10 us: B = 100 * 10 + 100 * 20 = 3,000 us/s;
    # A = 100 * (100 + 10) + 9,900 * 20 = 209,000 us/s. Back: receive = 3,000 / 100 - 1 * 20 = 10;
    # publish = (209,000 - 3,000 - (9,900 - 100) * 20) / 100 = 100.
    skew = {"deliv_per_s@100": 10_000, "same_deliv_per_s@100": 9_900, "other_deliv_per_s@100": 100,
            "node_a_util@100": 0.209, "node_b_util@100": 0.003}
    figs = cap.from_cluster([("skew", {"args": {"on_node_a": 0.99}, "medians": {"cluster": skew}})], 20.0)
    assert figs["receive_us"].value == pytest.approx(10)
    assert figs["publish_us"].value == pytest.approx(100)
    # a second run with every subscriber on node A (one subscribed node): 41 us per publish.
    # The line through (1, 41) and (2, 50): 9 us per subscribed node, 32 us for the script.
    one = {"deliv_per_s@100": 100_000, "redis_util@100": 0.041}
    figs = cap.from_cluster([("run", {"args": {"on_node_a": 0.5}, "medians": {"cluster": med}}),
                             ("one", {"args": {"on_node_a": 1.0}, "medians": {"cluster": one}})], 20.0)
    assert figs["redis_node_us"].value == pytest.approx(9)
    assert figs["redis_publish_us"].value == pytest.approx(32)
    assert not figs["redis_publish_us"].estimate
    assert math.isclose(figs["publish_us"].value, 100)


def test_subscribed_nodes_of_a_cluster_layout(cap) -> None:
    # the publisher is a member on node A, so A is always subscribed; B only with subscribers
    med = {"deliv_per_s@100": 1000}
    assert cap.cluster_phase(med, {"on_node_a": 0.5}, 100).nodes == 2
    assert cap.cluster_phase(med, {"on_node_a": 0.0}, 100).nodes == 2  # all 100 on B
    assert cap.cluster_phase(med, {"on_node_a": 1.0}, 100).nodes == 1  # all on A
    assert cap.cluster_phase(med | {"subscriber_nodes@100": 3}, {}, 100).nodes == 3
