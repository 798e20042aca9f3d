"""Echo server: every message comes back with the same type.

Run: python examples/echo.py [port] (or PORT=...; default 9001; HOST=0.0.0.0 to serve other machines).
Try it with any WebSocket client, e.g. `pip install websockets` then
`python -m websockets ws://127.0.0.1:9001/`.
"""

import logging
import os
import sys

import hyperws

server = hyperws.Server()


@server.ws("/", max_payload_length=16 * 1024 * 1024, idle_timeout=120)
def on_open(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # "listening on ..." once bound
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "9001"))
    server.run(port, os.environ.get("HOST", "127.0.0.1"))
