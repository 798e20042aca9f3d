"""Upgrades authenticated with a token, and the page that uses them, on one port.

Run: python examples/auth.py [port] (or PORT=...; default 9003; HOST=0.0.0.0 to serve other machines),
then open http://127.0.0.1:9003/ in a browser (the token is "secret"; a wrong one gets HTTP 401), or,
after `pip install websockets`, `python -m websockets "ws://127.0.0.1:9003/rooms/lobby?token=secret"`.
`GET /health` answers for load balancers.
"""

import json
import logging
import os
import sys
import time
from collections.abc import Callable

import hyperws

TOKENS = {"secret": "ada"}  # token -> user; a real app asks its session store
server = hyperws.Server()
recent: dict[str, float] = {}

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>hyperws rooms</title>
<form id="join">
  <input id="token" placeholder="token" value="secret">
  <input id="room" placeholder="room" value="lobby">
  <button>join</button>
</form>
<form id="say" hidden><input id="text" autocomplete="off"><button>send</button></form>
<pre id="log"></pre>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
let socket;
document.getElementById("join").onsubmit = (event) => {
  event.preventDefault();
  const token = encodeURIComponent(document.getElementById("token").value);
  const room = encodeURIComponent(document.getElementById("room").value);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/rooms/${room}?token=${token}`);
  socket.onopen = () => { document.getElementById("say").hidden = false; };
  socket.onmessage = (message) => log(message.data);
  socket.onclose = (event) => log(`closed (${event.code}); a refused upgrade closes at once`);
};
document.getElementById("say").onsubmit = (event) => {
  event.preventDefault();
  const text = document.getElementById("text");
  socket.send(text.value);
  text.value = "";
};
</script>
"""


@server.get("/")
def page(request: hyperws.Request, response: hyperws.Response) -> None:
    response.type("text/html; charset=utf-8").send(PAGE)


@server.get("/health")
def health(request: hyperws.Request, response: hyperws.Response) -> None:
    response.type("application/json").send(
        json.dumps({"status": "ok", "connections": server.connections})
    )


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
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # "listening on ..." once bound
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "9003"))
    server.run(port, os.environ.get("HOST", "127.0.0.1"))
