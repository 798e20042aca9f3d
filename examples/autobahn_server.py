"""The conformance app for the Autobahn test suite: echo with the limits the suite needs (16 MiB messages).

Run: python examples/autobahn_server.py PORT
"""

import sys

import hyperws

server = hyperws.Server()


def echo(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))


server.ws("/", echo, max_payload_length=16 * 1024 * 1024, idle_timeout=0)
server.ws("/*", echo, max_payload_length=16 * 1024 * 1024, idle_timeout=0)

if __name__ == "__main__":
    server.run(int(sys.argv[1]), host="127.0.0.1")
