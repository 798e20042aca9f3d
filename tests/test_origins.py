"""The ``origins`` route option: a browser upgrade from an origin not listed gets 403 before any handler
runs (protection against cross-site WebSocket hijacking)."""

from __future__ import annotations

import pytest

import hyperws

from rawws import http_exchange, new_key, upgrade_request


def with_origin(path: str, origin: str | None) -> bytes:
    extra = [("Origin", origin)] if origin is not None else None
    return upgrade_request(path, key=new_key(), extra=extra)


@pytest.fixture
async def guarded(serve):
    handled: list[str] = []
    server = hyperws.Server()
    server.ws("/app", lambda ws: handled.append("open"), origins=["https://app.example"])
    server.ws("/any", lambda ws: handled.append("open"), origins=["*"])

    @server.upgrade("/app")
    def decide(request: hyperws.Request, response: hyperws.Response) -> None:
        handled.append("upgrade handler")
        response.upgrade()

    await serve(server)
    return server, handled


async def test_listed_origin_is_upgraded(guarded):
    server, handled = guarded
    response = await http_exchange(server.port, with_origin("/app", "https://app.example"))
    assert response.status == 101
    assert "upgrade handler" in handled


async def test_other_origin_gets_403_before_any_handler(guarded):
    server, handled = guarded
    response = await http_exchange(server.port, with_origin("/app", "https://evil.example"))
    assert response.status == 403
    assert handled == []


async def test_a_request_without_origin_is_not_from_a_browser_and_is_not_checked(guarded):
    server, _ = guarded
    assert (await http_exchange(server.port, with_origin("/app", None))).status == 101


async def test_star_allows_every_origin(guarded):
    server, _ = guarded
    response = await http_exchange(server.port, with_origin("/any", "https://anything.example"))
    assert response.status == 101


@pytest.mark.parametrize("origins", ["https://a.example", ["a.example"], [3]])
def test_bad_origins_are_value_errors(origins):
    with pytest.raises(ValueError, match="origins"):
        hyperws.Router().ws("/x", lambda ws: None, origins=origins)
