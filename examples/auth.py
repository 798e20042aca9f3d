"""Upgrades authenticated with a token: only clients that connect with ?token=secret get a WebSocket.

Run: python examples/auth.py [port], then `python -m websockets "ws://127.0.0.1:9003/rooms/lobby?token=secret"`
(a wrong token gets HTTP 401).
"""

import sys
import time
from collections.abc import Callable

import hyperws

TOKENS = {"secret": "ada"}  # token -> user; a real app asks its session store
server = hyperws.Server()
recent: dict[str, float] = {}


def throttle(
    request: hyperws.Request, response: hyperws.Response, next: Callable[[], None]
) -> None:
    """At most one upgrade per second per address."""
    now = time.monotonic()
    if now - recent.get(request.ip, 0.0) < 1.0:
        response.status(429).send("slow down")
        return
    recent[request.ip] = now
    next()


@server.upgrade("/rooms/:room", middlewares=[throttle])
async def authenticate(request: hyperws.Request, response: hyperws.Response) -> None:
    user = TOKENS.get(request.query_parameters.get("token", ""))
    if user is None:
        response.status(401).send("unknown token")
        return
    response.upgrade({"user": user, "room": request.path_parameters["room"]})


@server.ws("/rooms/:room", idle_timeout=120)
def on_open(ws: hyperws.Websocket) -> None:
    room = ws.context["room"]
    ws.subscribe(f"rooms/{room}")
    ws.send(f"hello {ws.context['user']}, you are in {room}")
    ws.on("message", lambda message, is_binary: ws.publish(f"rooms/{room}", message, is_binary))


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9003
    print(f"ws://127.0.0.1:{port}/rooms/NAME?token=secret (Ctrl-C to stop)")
    try:
        server.run(port)
    except KeyboardInterrupt:
        pass
