"""Rate limits checked inside the Redis broker's publish script: one round trip per publish.

When ``RateLimit.storage`` is the broker's own Redis (:func:`same_redis`), the
limiter hands the publish its limits (a :class:`~.base.LimitCheck`) and the
broker runs :data:`LIMITS` in front of the publish script (:func:`limited`):
it checks every limit, refuses with ``{3, index, retry_after µs}`` when one is
spent (nothing counted, nothing published), else counts the publish in every
limit and falls through to the publish itself.

The counters are the ``limits`` library's sliding-window counters, with its
keys and arithmetic (``acquire_sliding_window.lua``, ``sliding_window.lua``
and ``SlidingWindowCounterRateLimiter.get_window_stats`` of limits 5.x)::

    {RateLimit.prefix}:{LIMITER/{scope}/{key}/{amount}/{multiples}/{granularity}}     current window
    {RateLimit.prefix}:{LIMITER/{scope}/{key}/{amount}/{multiples}/{granularity}}/-1  previous window

so a node on the two-round-trip path (``limits`` itself: an older node in a
rolling upgrade, a ``moving-window`` limiter is not fused) shares the same
budgets, and ``EventLimiter.reset()`` still clears them.

The limit keys and arguments go after the publish script's own (which are left
as they are): ``KEYS[#KEYS - 2n + 1 ..]`` are the counters, ``ARGV[#ARGV - 2n ..
#ARGV - 1]`` the (amount, window seconds) pairs and ``ARGV[#ARGV]`` is ``n``
(``0``: not limited), so the publish script may gain keys or arguments.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .base import LimitCheck, LimitRefused

REFUSED = 3  # the answer's first element when a limit refused the publish

# per limit i: KEYS previous, current; ARGV amount, window (s)
LIMITS = """
do
  local n = tonumber(ARGV[#ARGV])
  if n > 0 then
    local k0, a0 = #KEYS - 2 * n, #ARGV - 1 - 2 * n
    for i = 1, n do
      local previous, current = KEYS[k0 + 2 * i - 1], KEYS[k0 + 2 * i]
      local limit = tonumber(ARGV[a0 + 2 * i - 1])
      local expiry = tonumber(ARGV[a0 + 2 * i]) * 1000
      local current_ttl = tonumber(redis.call('PTTL', current))
      if current_ttl > 0 and current_ttl < expiry then
        redis.call('RENAME', current, previous)
        redis.call('SET', current, 0, 'PX', current_ttl + expiry)
      end
      local previous_count = tonumber(redis.call('GET', previous)) or 0
      local previous_ttl = tonumber(redis.call('PTTL', previous)) or 0
      local current_count = tonumber(redis.call('GET', current)) or 0
      current_ttl = tonumber(redis.call('PTTL', current)) or 0
      if previous_ttl < 0 then previous_ttl = 0 end
      if current_ttl < 0 then current_ttl = 0 end
      if math.floor(previous_count * previous_ttl / expiry) + current_count + 1 > limit then
        local wait = -1
        if previous_count > 0 then wait = (previous_ttl / 1000) % (expiry / 1000 / previous_count) end
        if current_count > 0 then
          local w = (current_ttl / 1000) % (expiry / 1000)
          if wait < 0 or w < wait then wait = w end
        end
        if wait < 0 then wait = 0 end
        return {3, i, math.floor(wait * 1000000)}
      end
    end
    for i = 1, n do
      local current = KEYS[k0 + 2 * i]
      if redis.call('EXISTS', current) == 1 then
        redis.call('INCRBY', current, 1)
      else
        redis.call('SET', current, 1, 'PX', tonumber(ARGV[a0 + 2 * i]) * 2000)
      end
    end
  end
end
"""

_NONE: tuple[list[str], list[Any]] = ([], [0])


def limited(publish: str) -> str:
    """The publish script with the limits checked and counted first."""
    return LIMITS + publish


def fused(check: LimitCheck | None) -> tuple[list[str], list[Any]]:
    """The keys and arguments appended to the publish script's own."""
    if check is None or not check.limits:
        return _NONE
    return check.keys, [*check.args, len(check.limits)]


def refusal(answer: list[Any]) -> LimitRefused:
    """The script's refusal (``{3, limit index from 1, retry_after µs}``) as an exception."""
    return LimitRefused(int(answer[1]) - 1, int(answer[2]) / 1_000_000)


def _identity(url: str) -> tuple[Any, ...] | None:
    """Which Redis server and database ``url`` points at (None: not a plain Redis URL).

    Only what picks the data counts: scheme (TLS or not), host, port, socket path, db and
    user. Other query options (timeouts, pool sizes, protocol...) tune a connection, not
    which data it reaches, and are ignored; so is the password."""
    url = url.removeprefix("async+")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        return None
    query = parse_qs(parts.query)
    db_text = (query.get("db") or [""])[0]
    if not db_text and scheme != "unix":
        db_text = parts.path.strip("/")
    try:
        db = int(db_text or 0)
        port = parts.port
    except ValueError:
        return None
    user = unquote(parts.username) if parts.username else None
    if scheme == "unix":
        return scheme, unquote(parts.path), db, user
    return scheme, (parts.hostname or "localhost").lower(), port or 6379, db, user


def same_redis(broker_url: str, storage_url: str) -> bool:
    """True when a ``RateLimit.storage`` URL reaches the broker's own Redis database.
    Host names are compared as written (``localhost`` is not ``127.0.0.1``)."""
    broker, storage = _identity(broker_url), _identity(storage_url)
    return broker is not None and broker == storage
