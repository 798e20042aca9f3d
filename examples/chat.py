"""Chat with rooms on pub/sub topics.

Run: python examples/chat.py [port], then connect clients, for example with
`python -m websockets ws://127.0.0.1:9002/chat`. Every line you send goes to the others in your room;
`/join NAME` moves you to another room (you start in "lobby"), `/rooms` lists yours.
"""

import sys

import hyperws

server = hyperws.Server()


@server.ws("/chat", idle_timeout=120)
def on_open(ws: hyperws.Websocket) -> None:
    ws.context["room"] = "lobby"
    ws.subscribe("chat/lobby")
    ws.send("welcome to #lobby; /join NAME to move, /rooms to list")

    @ws.on("message")
    def on_message(message: str | bytes, is_binary: bool) -> None:
        text = message if isinstance(message, str) else message.decode(errors="replace")
        if text.startswith("/join "):
            room = text[len("/join ") :].strip()
            try:
                ws.subscribe(f"chat/{room}")
            except ValueError as error:  # '+', '#' or an empty name
                ws.send(f"bad room name: {error}")
                return
            ws.unsubscribe(f"chat/{ws.context['room']}")
            ws.publish(f"chat/{ws.context['room']}", f"{ws.ip} left")
            ws.context["room"] = room
            ws.publish(f"chat/{room}", f"{ws.ip} joined")
            ws.send(f"you are in #{room} ({server.num_subscribers(f'chat/{room}')} here)")
        elif text == "/rooms":
            ws.send(", ".join(ws.topics))
        else:
            ws.publish(f"chat/{ws.context['room']}", f"{ws.ip}: {text}")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9002
    print(f"chat on ws://127.0.0.1:{port}/chat (Ctrl-C to stop)")
    try:
        server.run(port)
    except KeyboardInterrupt:
        pass
