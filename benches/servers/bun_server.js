// The benchmark app on Bun (Bun.serve's WebSocket server: uWebSockets inside; the binary comes from the `bun`
// npm package, installed by setup_peers.sh into benches/.peers/node).
//
// /echo: `ws.send(message)` back (same type); /sub: `ws.subscribe("bench")`; /pub: every message received goes out
// with `server.publish("bench", message)` (native pub/sub); /slow: messages go to a per-connection queue worked
// through at SLOW_DELAY per binary message (Bun has no way to pause reading a WebSocket, so a flood piles up in
// that queue); a text message is answered with the tally "<messages> <bytes>"; /echoz: /echo sent with
// `compress = true` (Bun enables permessage-deflate per server: it is negotiated only where the client offers it,
// and the load generator offers it only to /echoz); /json: the "typical app" (jsonReply, the Python peers'
// `_common.json_reply` in JS) answering each message with `ws.send(text)`. With `--cert FILE --key FILE` it
// serves TLS (wss://):
// `Bun.serve({ tls: { cert, key } })`. Prints READY once listening.

const SLOW_DELAY_MS = 1;
const TOPIC = "bench";

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const ROUTES = new Set(["/echo", "/echoz", "/json", "/sub", "/pub", "/slow"]);
const roomCounts = new Map();

function jsonReply(message) {
  const request = JSON.parse(typeof message === "string" ? message : new TextDecoder().decode(message));
  const count = (roomCounts.get(request.room) ?? 0) + 1;
  roomCounts.set(request.room, count);
  return JSON.stringify({ room: request.room, count, length: request.text.length });
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function work(ws) {
  const s = ws.data;
  s.working = true;
  while (s.queue.length) {
    const message = s.queue.shift();
    if (typeof message === "string") {
      ws.send(`${s.messages} ${s.bytes}`);
    } else {
      s.messages += 1;
      s.bytes += message.byteLength;
      await sleep(SLOW_DELAY_MS);
    }
  }
  s.working = false;
}

const certFile = arg("cert");
const keyFile = arg("key");
if (!certFile !== !keyFile) throw new Error("--cert and --key go together");
const tls = certFile ? { tls: { cert: Bun.file(certFile), key: Bun.file(keyFile) } } : {};

const server = Bun.serve({
  hostname: arg("host", "127.0.0.1"),
  port: Number(arg("port")),
  ...tls,
  fetch(req, server) {
    const path = new URL(req.url).pathname;
    if (ROUTES.has(path) && server.upgrade(req, { data: { path } })) return undefined;
    return new Response("not found\n", { status: 404 });
  },
  websocket: {
    maxPayloadLength: 16 * 1024 * 1024,
    perMessageDeflate: true,
    open(ws) {
      if (ws.data.path === "/sub") ws.subscribe(TOPIC);
      if (ws.data.path === "/slow") Object.assign(ws.data, { queue: [], working: false, messages: 0, bytes: 0 });
    },
    message(ws, message) {
      switch (ws.data.path) {
        case "/echo":
          ws.send(message);
          break;
        case "/echoz":
          ws.send(message, true);
          break;
        case "/json":
          ws.send(jsonReply(message));
          break;
        case "/pub":
          server.publish(TOPIC, message);
          break;
        case "/slow":
          ws.data.queue.push(message);
          if (!ws.data.working) work(ws);
          break;
      }
    },
  },
});
process.stderr.write(`bun: listening (Bun ${Bun.version}${certFile ? ", TLS" : ""})\n`);
process.stdout.write("READY\n");
process.on("SIGTERM", () => process.exit(0));
