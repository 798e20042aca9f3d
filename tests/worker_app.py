"""An app for the worker tests: each connection is told the pid of the process that serves it.
Run: python worker_app.py PORT WORKERS (or python -m hyperws worker_app:server --workers N)."""

import os
import sys

import hyperws

server = hyperws.Server()


@server.ws("/pid")
def on_open(ws: hyperws.Websocket) -> None:
    ws.send(str(os.getpid()))


if __name__ == "__main__":
    server.run(int(sys.argv[1]), "127.0.0.1", workers=int(sys.argv[2]))
