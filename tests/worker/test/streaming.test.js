// Streaming through the Worker: the upstream sends event i+1 only after the client has received
// event i, so a proxy that buffers the body deadlocks (and this test fails by timeout, not hang).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { authBindings, bearer, mintHs, startUpstream, startWorker } from "./helpers.js";

const EVENTS = 5;
const STEP_TIMEOUT_MS = 3000;

let upstream;
let worker;
const received = [];
let notify = () => {};

function clientReceived(index) {
  if (received.includes(index)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), STEP_TIMEOUT_MS);
    notify = (got) => {
      if (got === index) {
        clearTimeout(timer);
        resolve(true);
      }
    };
  });
}

before(async () => {
  upstream = await startUpstream(async (req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    for (let i = 0; i < EVENTS; i++) {
      res.write(`data: {"index":${i}}\n\n`);
      if (!(await clientReceived(i))) {
        res.end(`data: {"error":"client never received event ${i}: the proxy buffers"}\n\n`);
        return;
      }
    }
    res.end("data: [DONE]\n\n");
  });
  worker = await startWorker({ bindings: authBindings(upstream.url) });
});
after(async () => {
  await worker?.mf.dispose();
  await upstream?.close();
});

test("events stream through one at a time, unbuffered", async () => {
  const response = await fetch(`${worker.url}/v1/chat/completions`, {
    method: "POST",
    headers: { ...bearer(await mintHs()), "content-type": "application/json" },
    body: JSON.stringify({ model: "m", stream: true, messages: [] }),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  const decoder = new TextDecoder();
  let buffer = "";
  const events = [];
  for await (const chunk of response.body) {
    buffer += decoder.decode(chunk, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) !== -1) {
      const data = buffer.slice(0, end).replace(/^data: /, "");
      buffer = buffer.slice(end + 2);
      events.push(data);
      if (data !== "[DONE]" && "index" in JSON.parse(data)) {
        received.push(JSON.parse(data).index);
        notify(JSON.parse(data).index);
      }
    }
  }
  assert.deepEqual(events, [...Array.from({ length: EVENTS }, (_, i) => `{"index":${i}}`), "[DONE]"]);
});
