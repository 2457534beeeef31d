import asyncio

import pytest

from adapters.endpoints import AllEndpointsFailed, EndpointPool


class Down(ConnectionError):
    pass


class Reverted(Exception):
    pass


def pool(urls, **kw):
    return EndpointPool("test", urls, make_client=lambda url: url, is_retryable=lambda e: isinstance(e, Down),
                        base_delay=0.0, **kw)


async def test_fails_over_to_the_next_endpoint_and_records_health() -> None:
    p = pool(["http://a", "http://b"])
    calls = []

    async def fn(url):
        calls.append(url)
        if url == "http://a":
            raise Down("connection refused")
        return 42

    assert await p.call("eth_blockNumber", fn) == 42
    assert calls == ["http://a", "http://b"]
    a, b = p.health()
    assert not a.healthy and a.total_errors == 1 and "connection refused" in a.last_error
    assert b.healthy
    calls.clear()
    assert await p.call("eth_blockNumber", fn) == 42
    assert calls == ["http://b"]  # the healthy endpoint is now tried first
    assert p.preferred == "http://b"  # and is the one offered for a caller's own reads


async def test_request_errors_are_not_retried() -> None:
    p = pool(["http://a", "http://b"])
    calls = []

    async def fn(url):
        calls.append(url)
        raise Reverted("execution reverted")

    with pytest.raises(Reverted):
        await p.call("eth_call", fn)
    assert calls == ["http://a"]


async def test_all_down_gives_a_clear_error_after_bounded_retries() -> None:
    p = pool(["http://a", "http://b"], attempts=3)
    calls = []

    async def fn(url):
        calls.append(url)
        raise Down("refused")

    with pytest.raises(AllEndpointsFailed, match="failed on every endpoint .*http://a, http://b.* after 3 rounds"):
        await p.call("getSlot", fn)
    assert len(calls) == 6


async def test_a_hanging_endpoint_times_out_and_fails_over() -> None:
    p = pool(["http://slow", "http://fast"], timeout=0.05)

    async def fn(url):
        if url == "http://slow":
            await asyncio.sleep(10)
        return "ok"

    assert await p.call("getHealth", fn) == "ok"
    assert not p.health()[0].healthy
