"""An app for the worker tests: each connection is told the pid of the process that serves it.
Run: python worker_app.py PORT WORKERS (or python -m hyperws worker_app:server --workers N). With
WORKER_APP_CERT and WORKER_APP_KEY set (PEM files) it serves wss://."""

import os
import sys

import hyperws

tls = {}
if "WORKER_APP_CERT" in os.environ:
    tls = {"cert_file": os.environ["WORKER_APP_CERT"], "key_file": os.environ["WORKER_APP_KEY"]}
server = hyperws.Server(**tls)


@server.ws("/pid")
def on_open(ws: hyperws.Websocket) -> None:
    ws.send(str(os.getpid()))


if __name__ == "__main__":
    server.run(int(sys.argv[1]), "127.0.0.1", workers=int(sys.argv[2]))
