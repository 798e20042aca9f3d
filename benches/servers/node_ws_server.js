// The benchmark app on Node.js with the `ws` package (installed by setup_peers.sh into benches/.peers/node).
//
// /echo: every message back with the same type; /sub: joins the subscriber set; /pub: every message received is
// sent to every subscriber in a loop (`ws` has no pub/sub); /slow: messages go to a per-connection queue worked
// through at SLOW_DELAY per binary message, the socket paused (`ws.pause()`) while 16 or more wait; a text message
// is answered with the tally "<messages> <bytes>"; /echoz: /echo on a second WebSocketServer with
// permessage-deflate (threshold 0: every message compressed); /json: the "typical app" (jsonReply, the Python
// peers' `_common.json_reply` in JS) answering each message with a text `ws.send`. Prints READY once listening.
"use strict";

const http = require("http");
const path = require("path");
const { WebSocketServer } = require(path.join(__dirname, "..", ".peers", "node", "node_modules", "ws"));

const SLOW_DELAY_MS = 1;
const PAUSE_AT = 16;
const MAX = 16 * 1024 * 1024;

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const port = Number(arg("port"));
const host = arg("host", "127.0.0.1");

const plain = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: MAX });
const deflate = new WebSocketServer({
  noServer: true,
  maxPayload: MAX,
  perMessageDeflate: { threshold: 0 },
});
const subscribers = new Set();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const roomCounts = new Map();

function jsonReply(data) {
  const request = JSON.parse(data.toString());
  const count = (roomCounts.get(request.room) ?? 0) + 1;
  roomCounts.set(request.room, count);
  return JSON.stringify({ room: request.room, count, length: request.text.length });
}

function echo(ws) {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
}

function slow(ws) {
  const queue = [];
  let working = false;
  let paused = false;
  let messages = 0;
  let bytes = 0;
  async function work() {
    working = true;
    while (queue.length) {
      const [data, isBinary] = queue.shift();
      if (isBinary) {
        messages += 1;
        bytes += data.length;
        await sleep(SLOW_DELAY_MS);
      } else {
        ws.send(`${messages} ${bytes}`);
      }
      if (paused && queue.length < PAUSE_AT / 2) {
        paused = false;
        ws.resume();
      }
    }
    working = false;
  }
  ws.on("message", (data, isBinary) => {
    queue.push([data, isBinary]);
    if (queue.length >= PAUSE_AT && !paused) {
      paused = true;
      ws.pause();
    }
    if (!working) work();
  });
}

const routes = {
  "/echo": [plain, echo],
  "/echoz": [deflate, echo],
  "/json": [plain, (ws) => ws.on("message", (data) => ws.send(jsonReply(data)))],
  "/sub": [
    plain,
    (ws) => {
      subscribers.add(ws);
      ws.on("close", () => subscribers.delete(ws));
    },
  ],
  "/pub": [
    plain,
    (ws) =>
      ws.on("message", (data, isBinary) => {
        for (const s of subscribers) s.send(data, { binary: isBinary });
      }),
  ],
  "/slow": [plain, slow],
};

const server = http.createServer((req, res) => {
  res.writeHead(404).end("not found\n");
});
server.on("upgrade", (req, socket, head) => {
  const route = routes[new URL(req.url, "http://x").pathname];
  if (!route) {
    socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    return;
  }
  const [wss, handler] = route;
  wss.handleUpgrade(req, socket, head, handler);
});
server.listen(port, host, () => {
  process.stderr.write(`node ws: listening (Node ${process.version})\n`);
  process.stdout.write("READY\n");
});
process.on("SIGTERM", () => process.exit(0));
