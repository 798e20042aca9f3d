"""Worker processes sharing a port and a broker, for test_backplane_redis.py:
``python backplane_workers_app.py URL PREFIX PORT WORKERS``. Each connection is told its worker's pid;
then ``sub:FILTER`` subscribes it (answered ``subscribed``) and ``pub:TOPIC:TEXT`` publishes TEXT."""

import os
import sys

import hyperws

server = hyperws.Server(pubsub=sys.argv[1], pubsub_prefix=sys.argv[2])


@server.ws("/")
def on_open(ws: hyperws.Websocket) -> None:
    def on_message(message: str, is_binary: bool) -> None:
        op, _, rest = message.partition(":")
        if op == "sub":
            ws.subscribe(rest)
            ws.send("subscribed")
        elif op == "pub":
            topic, _, text = rest.partition(":")
            server.publish(topic, text)

    ws.on("message", on_message)
    ws.send(str(os.getpid()))


if __name__ == "__main__":
    server.run(int(sys.argv[3]), "127.0.0.1", workers=int(sys.argv[4]))
