"""A live dashboard: the server publishes ticks to every subscriber, and a page plots them.

Run: python examples/dashboard.py [port] (or PORT=...; default 9004; HOST=0.0.0.0 to serve other
machines), then open http://127.0.0.1:9004/ in as many browser windows as you like.

A background task makes a random walk of three series and publishes a tick (a small JSON object) to
the topic `ticks` every 100 ms with `server.publish`: the message is encoded once and fanned out to
every subscriber by the engine, so a tick costs the same Python work for one page or thousands. A
page connects to `/ticks`, gets the recent history first, then subscribes; it plots the last minute
in SVG, with plain JS (nothing loaded from elsewhere). The task starts with the first connection, on
the server's event loop, so the module also runs as `python -m hyperws examples.dashboard:server`.
"""

import asyncio
import json
import logging
import os
import random
import sys
import time
from collections import deque

import hyperws

PERIOD = 0.1  # seconds between ticks
HISTORY = 600  # ticks kept for new pages: one minute
SERIES = ("alpha", "beta", "gamma")

server = hyperws.Server()
history: deque[str] = deque(maxlen=HISTORY)
ticker: asyncio.Task[None] | None = None

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hyperws dashboard</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
  svg { width: 100%; height: 20rem; border: 1px solid #ccc; border-radius: 4px; background: #fcfcfc; }
  .grid { stroke: #eee; vector-effect: non-scaling-stroke; }
  polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
  .alpha { stroke: #0b5cad; color: #0b5cad; }
  .beta { stroke: #c2410c; color: #c2410c; }
  .gamma { stroke: #15803d; color: #15803d; }
  #legend span { margin-right: 1.5rem; font-variant-numeric: tabular-nums; }
  #status { color: #777; }
</style>
<h1>hyperws dashboard</h1>
<p id="legend"></p>
<svg id="plot" viewBox="0 0 600 100" preserveAspectRatio="none" data-ticks="0">
  <path class="grid" d="M0 26H600M0 50H600M0 74H600M150 0V100M300 0V100M450 0V100"/>
</svg>
<p id="status">connecting...</p>
<script>
const SERIES = ["alpha", "beta", "gamma"];
const KEEP = 600;  // points per series: one minute at 10 ticks a second
const NS = "http://www.w3.org/2000/svg";
const plot = document.getElementById("plot");
const ticks = [];
const lines = {};
const labels = {};
for (const name of SERIES) {
  lines[name] = plot.appendChild(document.createElementNS(NS, "polyline"));
  lines[name].setAttribute("class", name);
  labels[name] = document.getElementById("legend").appendChild(document.createElement("span"));
  labels[name].className = name;
}
let received = 0;
let subscribers = 0;
let dirty = false;

function add(tick) {
  ticks.push(tick);
  if (ticks.length > KEEP) ticks.shift();
  received += 1;
  subscribers = tick.subscribers;
  dirty = true;
}

function draw() {
  requestAnimationFrame(draw);
  if (!dirty || ticks.length === 0) return;
  dirty = false;
  let low = Infinity, high = -Infinity;
  for (const tick of ticks) for (const name of SERIES) {
    low = Math.min(low, tick.values[name]);
    high = Math.max(high, tick.values[name]);
  }
  const span = high - low || 1;
  const last = ticks[ticks.length - 1];
  for (const name of SERIES) {
    const points = ticks.map((tick, i) =>
      `${(600 * i / Math.max(ticks.length - 1, 1)).toFixed(1)},` +
      `${(98 - 96 * (tick.values[name] - low) / span).toFixed(2)}`);
    lines[name].setAttribute("points", points.join(" "));
    labels[name].textContent = `${name} ${last.values[name].toFixed(2)}`;
  }
  plot.dataset.ticks = received;
  document.getElementById("status").textContent =
    `${received} ticks received; ${subscribers} subscriber(s); range ${low.toFixed(1)} to ${high.toFixed(1)}`;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ticks`);
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (Array.isArray(message)) message.forEach(add);  // the history, first
    else add(message);
  };
  socket.onclose = () => {
    document.getElementById("status").textContent = "disconnected; reconnecting...";
    setTimeout(connect, 1000);
  };
}
connect();
requestAnimationFrame(draw);
</script>
"""


async def tick() -> None:
    values = dict.fromkeys(SERIES, 50.0)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        for name in SERIES:
            values[name] = min(100.0, max(0.0, values[name] + random.gauss(0, 1)))
        message = json.dumps(
            {
                "time": round(time.time(), 3),
                "values": {name: round(value, 3) for name, value in values.items()},
                "subscribers": server.num_subscribers("ticks"),
            }
        )
        history.append(message)
        server.publish("ticks", message)
        next_at += PERIOD  # a fixed schedule: slow iterations do not make the ticks drift
        await asyncio.sleep(max(0.0, next_at - loop.time()))


@server.get("/")
def page(request: hyperws.Request, response: hyperws.Response) -> None:
    response.type("text/html; charset=utf-8").send(PAGE)


@server.ws("/ticks", idle_timeout=60)
def on_open(ws: hyperws.Websocket) -> None:
    global ticker
    if ticker is None or ticker.done():  # done: the loop of an earlier run() ended
        ticker = asyncio.get_running_loop().create_task(tick())
    # Both on the loop, between two ticks: the page gets every tick once, in order.
    ws.send("[" + ",".join(history) + "]")
    ws.subscribe("ticks")


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "9004"))
    host = os.environ.get("HOST", "127.0.0.1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # "listening on ..." once bound
    server.run(port, host)
