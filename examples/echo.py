"""Echo server: every message comes back with the same type. Run: python examples/echo.py [port]"""

import sys

import hyperws

server = hyperws.Server()


@server.ws("/", max_payload_length=16 * 1024 * 1024, idle_timeout=120)
def on_open(ws: hyperws.Websocket) -> None:
    print(f"{ws.ip} connected")
    ws.on("message", lambda message, is_binary: ws.send(message, is_binary))
    ws.on("close", lambda code, message: print(f"{ws.ip} disconnected ({code})"))


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9001
    print(f"hyperws echo server on ws://127.0.0.1:{port}/ (Ctrl-C to stop)")
    try:
        server.run(port)
    except KeyboardInterrupt:
        pass
