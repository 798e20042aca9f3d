"""The conformance app for the Autobahn test suite: echo with the limits the suite needs (16 MiB messages).

Routes: `/dedicated` compresses with a context per connection, `/shared` compresses each message on its
own, `/plain` (and any other path) does not offer permessage-deflate. Every route echoes with
`compress=True`, which compresses only where the connection negotiated the extension.

Run: python examples/autobahn_server.py PORT
"""

import sys

import hyperws

server = hyperws.Server()


def echo(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary, compress=True))


limits = {"max_payload_length": 16 * 1024 * 1024, "idle_timeout": 0}
server.ws("/dedicated", echo, compression="dedicated", **limits)
server.ws("/shared", echo, compression="shared", **limits)
server.ws("/", echo, **limits)
server.ws("/*", echo, **limits)

if __name__ == "__main__":
    server.run(int(sys.argv[1]), host="127.0.0.1")
