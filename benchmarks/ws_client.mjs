// WebSocket load generator on Node's built-in WebSocket client (undici, the code behind Node's
// `WebSocket` global): like Chromium, it offers `permessage-deflate; client_max_window_bits` on every
// connection, and it reads compressed messages. It sends its own messages uncompressed, which
// RFC 7692 allows. N connections each echo one message at a time (or --depth in flight) until the
// deadline; the result is one JSON line on stdout, in the same form as ws_client.py:
//
//   {"messages", "seconds", "messages_per_s", "p50_ms", "p99_ms", "connections", "errors",
//    "mismatches", "client_cpu_pct", "extensions"}
//
// Usage (Node 20 needs the flag; later versions have the global without it):
//
//   node --experimental-websocket benchmarks/ws_client.mjs ws://127.0.0.1:8000/ \
//        --connections 64 --duration 10 --message hello|json1k
//
// Every wait is bounded: the opening of the connections, each reply (5 s), and the whole run.

const REPLY_TIMEOUT_MS = 5000;
const OPEN_TIMEOUT_MS = 10000;

function parseArgs(argv) {
  const options = { url: null, connections: 64, duration: 10, message: "hello", depth: 1 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--connections") options.connections = Number(argv[++i]);
    else if (arg === "--duration") options.duration = Number(argv[++i]);
    else if (arg === "--message") options.message = argv[++i];
    else if (arg === "--depth") options.depth = Math.max(1, Number(argv[++i]));
    else if (!arg.startsWith("--")) options.url = arg;
    else throw new Error(`unknown option ${arg}`);
  }
  if (!options.url) throw new Error("usage: ws_client.mjs URL [--connections N] [--duration S] [--message hello|json1k]");
  return options;
}

// The two messages of the benchmark: 13 bytes of text, and about 1 KiB of JSON as a chat or dashboard
// sends it (varied keys and values, so it compresses as such JSON does, not as a repeated string).
function makeMessage(kind) {
  if (kind === "hello") return "Hello, World!";
  if (kind === "json1k") {
    const items = [];
    for (let i = 0; items.length === 0 || JSON.stringify({ items }).length < 1000; i++) {
      items.push({ id: 1000 + i, user: `user-${(i * 7919) % 1000}`, score: (i * 37.5) % 101, online: i % 3 === 0 });
    }
    return JSON.stringify({ type: "update", items }).slice(0, 1024);
  }
  throw new Error(`unknown message ${kind}`);
}

function percentile(sorted, fraction) {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))];
}

async function main() {
  if (typeof WebSocket === "undefined") {
    console.error("ws_client.mjs: no WebSocket global (Node 20 needs --experimental-websocket)");
    process.exit(2);
  }
  const options = parseArgs(process.argv.slice(2));
  const message = makeMessage(options.message);
  const state = { measuring: false, stopped: false, messages: 0, latencies: [], errors: 0, mismatches: 0, firstError: "" };
  const extensions = new Set();

  const sockets = await Promise.all(
    Array.from({ length: options.connections }, () => open(options.url, state, extensions)),
  );
  const live = sockets.filter((ws) => ws !== null);

  for (const ws of live) {
    const sentAt = [];
    let timer = null;
    const send = () => {
      if (state.stopped) return;
      sentAt.push(performance.now());
      ws.send(message);
      if (timer === null) timer = setTimeout(onTimeout, REPLY_TIMEOUT_MS);
    };
    const onTimeout = () => {
      timer = null;
      if (!state.stopped) fail(state, "no reply within 5 s");
    };
    ws.onmessage = (event) => {
      const started = sentAt.shift();
      if (event.data !== message) state.mismatches++;
      if (state.measuring) {
        state.messages++;
        if (state.messages % 8 === 0) state.latencies.push(performance.now() - started);
      }
      clearTimeout(timer);
      timer = null;
      send();
    };
    ws.onclose = () => {
      if (timer !== null) clearTimeout(timer);
      if (!state.stopped) fail(state, "connection closed by the server");
    };
    for (let i = 0; i < options.depth; i++) send();
  }

  // A short warm-up inside the run (JIT, server caches), then the measured window.
  await sleep(Math.min(1000, options.duration * 100));
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  state.measuring = true;
  await sleep(options.duration * 1000);
  state.measuring = false;
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  state.stopped = true;
  for (const ws of live) {
    ws.onclose = null;
    ws.close();
  }

  state.latencies.sort((a, b) => a - b);
  const result = {
    messages: state.messages,
    seconds: Number(seconds.toFixed(3)),
    messages_per_s: Math.round(state.messages / seconds),
    p50_ms: Number(percentile(state.latencies, 0.5).toFixed(3)),
    p99_ms: Number(percentile(state.latencies, 0.99).toFixed(3)),
    connections: live.length,
    errors: state.errors,
    mismatches: state.mismatches,
    client_cpu_pct: Math.round(((cpu.user + cpu.system) / 1000 / (seconds * 1000)) * 100),
    extensions: [...extensions].join(" | "),
    first_error: state.firstError,
  };
  console.log(JSON.stringify(result));
  setTimeout(() => process.exit(0), 200).unref();
}

function open(url, state, extensions) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => {
      fail(state, "opening timed out");
      resolve(null);
    }, OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(timer);
      extensions.add(ws.extensions || "none");
      resolve(ws);
    };
    ws.onerror = () => {
      clearTimeout(timer);
      fail(state, "connection error");
      resolve(null);
    };
  });
}

function fail(state, why) {
  state.errors++;
  if (!state.firstError) state.firstError = why;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

setTimeout(() => {
  console.error("ws_client.mjs: the run did not end in time");
  process.exit(3);
}, 600000).unref();

main().catch((error) => {
  console.error(`ws_client.mjs: ${error.stack || error}`);
  process.exit(1);
});
