"""Chat with rooms on pub/sub topics, and the page that uses it, served on one port.

Run: python examples/chat.py [port] (or PORT=...; default 9002; HOST=0.0.0.0 to serve other
machines), then open http://127.0.0.1:9002/ in two browser windows: pick a name and a room in each;
what one sends shows up in the other when they are in the same room.

Several servers, one chat: give each the same broker, e.g. PUBSUB=redis://127.0.0.1:6379/0 (or
nats://127.0.0.1:4222), and run two on different ports (`PUBSUB=... python examples/chat.py 9002` and
`... 9012`): a page on one sees the messages of a page on the other. With WORKERS=4, four processes
share the port (without PUBSUB, each worker's rooms are its own).

Each room is a topic: a connection subscribes to `chat/ROOM` (`ws.subscribe`), announces itself to
the others there (`ws.publish`), and every message is published to the whole room, sender included
(`server.publish`), so the sender sees it once the server has it. The page connects to
`/chat?name=NAME&room=ROOM`; the upgrade route checks both and keeps them in `ws.context`.
"""

import json
import logging
import os
import re
import sys

import hyperws

ROOM = re.compile(r"[A-Za-z0-9_-]{1,32}")  # no '/', '+' or '#': a room is exactly one topic level
server = hyperws.Server(pubsub=os.environ.get("PUBSUB"), pubsub_prefix="chat-example")

PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hyperws chat</title>
<style>
  body { font: 15px system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  [hidden] { display: none !important; }
  form { display: flex; gap: .5rem; margin: .5rem 0; }
  input { flex: 1; padding: .4rem; font: inherit; }
  button { padding: .4rem 1rem; font: inherit; }
  #messages { list-style: none; padding: .5rem; margin: 0; height: 20rem; overflow-y: auto;
              border: 1px solid #ccc; border-radius: 4px; background: #fafafa; }
  #messages li { padding: .15rem 0; }
  #messages .notice { color: #777; font-style: italic; }
  #messages b { color: #0b5cad; }
  #status { color: #777; }
</style>
<h1>hyperws chat</h1>
<form id="join">
  <input id="name" placeholder="your name" maxlength="32" required>
  <input id="room" placeholder="room" value="lobby" maxlength="32" required
         pattern="[A-Za-z0-9_-]+" title="letters, digits, - and _">
  <button>join</button>
</form>
<div id="chat" hidden>
  <p><span id="where"></span> <span id="status"></span> <button id="leave">leave</button></p>
  <ul id="messages"></ul>
  <form id="say"><input id="text" autocomplete="off" placeholder="message"><button>send</button></form>
</div>
<script>
const $ = (id) => document.getElementById(id);
let socket = null;

function show(message) {
  const item = document.createElement("li");
  if (message.type === "message") {
    const name = document.createElement("b");
    name.textContent = message.name;
    item.append(name, ": " + message.text);
  } else {
    item.className = "notice";
    item.textContent = message.text;
  }
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

$("join").onsubmit = (event) => {
  event.preventDefault();
  const query = new URLSearchParams({ name: $("name").value, room: $("room").value });
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/chat?${query}`);
  $("messages").replaceChildren();
  $("where").textContent = `#${$("room").value} as ${$("name").value}`;
  $("status").textContent = "connecting...";
  $("join").hidden = true;
  $("chat").hidden = false;
  socket.onopen = () => { $("status").textContent = ""; $("text").focus(); };
  socket.onmessage = (event) => show(JSON.parse(event.data));
  socket.onclose = (event) => {
    $("status").textContent = event.code === 1006 ? "(refused or lost)" : `(closed: ${event.code})`;
    $("join").hidden = false;
  };
};
$("say").onsubmit = (event) => {
  event.preventDefault();
  if (socket && socket.readyState === WebSocket.OPEN && $("text").value) {
    socket.send($("text").value);
    $("text").value = "";
  }
};
$("leave").onclick = () => socket && socket.close(1000, "left");
</script>
"""


@server.get("/")
def page(request: hyperws.Request, response: hyperws.Response) -> None:
    response.type("text/html; charset=utf-8").send(PAGE)


@server.upgrade("/chat")
def check(request: hyperws.Request, response: hyperws.Response) -> None:
    name = request.query_parameters.get("name", "").strip()
    room = request.query_parameters.get("room", "lobby")
    if not 0 < len(name) <= 32 or not ROOM.fullmatch(room):
        response.status(400).send("a name (1 to 32 characters) and a room ([A-Za-z0-9_-]{1,32})")
        return
    response.upgrade({"name": name, "room": room})


def event(kind: str, text: str, name: str = "") -> str:
    return json.dumps({"type": kind, "name": name, "text": text})


@server.ws("/chat", idle_timeout=120, max_payload_length=4096)
def on_open(ws: hyperws.Websocket) -> None:
    name, room = ws.context["name"], ws.context["room"]
    topic = f"chat/{room}"
    ws.subscribe(topic)
    here = server.num_subscribers(topic)
    ws.send(event("notice", f"welcome to #{room}, {name} ({here} here)"))
    ws.publish(topic, event("notice", f"{name} joined"))  # to the others in the room

    def on_message(message: str | bytes, is_binary: bool) -> None:
        text = message if isinstance(message, str) else message.decode(errors="replace")
        server.publish(topic, event("message", text, name))

    def on_close(code: int, reason: str) -> None:
        # The connection's subscriptions have ended with it: this reaches only the others.
        server.publish(topic, event("notice", f"{name} left"))

    ws.on("message", on_message)
    ws.on("close", on_close)


if __name__ == "__main__":
    port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PORT", "9002"))
    host = os.environ.get("HOST", "127.0.0.1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # "listening on ..." once bound
    server.run(port, host, workers=int(os.environ.get("WORKERS", "1")))
