"""The conformance app for the Autobahn test suite: echo with the limits the suite needs (16 MiB messages).

Routes: `/dedicated` compresses with a context per connection, `/shared` compresses each message on its
own, `/plain` (and any other path) does not offer permessage-deflate. Every route echoes with
`compress=True`, which compresses only where the connection negotiated the extension.

Run: python examples/autobahn_server.py PORT [CERT_FILE KEY_FILE]   (with the files: wss:// only)
"""

import sys
from typing import Any

import hyperws


def echo(ws: hyperws.Websocket) -> None:
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary, compress=True))


def make_server(cert_file: str | None = None, key_file: str | None = None) -> hyperws.Server:
    server = hyperws.Server(cert_file=cert_file, key_file=key_file)
    limits: dict[str, Any] = {"max_payload_length": 16 * 1024 * 1024, "idle_timeout": 0}
    server.ws("/dedicated", echo, compression="dedicated", **limits)
    server.ws("/shared", echo, compression="shared", **limits)
    server.ws("/", echo, **limits)
    server.ws("/*", echo, **limits)
    return server


if __name__ == "__main__":
    port, *tls_files = sys.argv[1:]
    make_server(*tls_files).run(int(port), host="127.0.0.1")
