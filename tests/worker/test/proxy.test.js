// What reaches the gateway and what comes back: routes, headers, body limits, upstream failures.
import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, test } from "node:test";
import { authBindings, bearer, errorBody, mintHs, startUpstream, startWorker } from "./helpers.js";

describe("proxy", () => {
  let upstream;
  let worker;
  let token;

  before(async () => {
    upstream = await startUpstream((req, res, record) => {
      res.writeHead(200, {
        "content-type": "application/json",
        connection: "close, x-upstream-hop",
        "x-upstream-hop": "per-connection",
        "x-gateway-backend": "llamacpp",
      });
      res.end(JSON.stringify({ echoed: record.body.length }));
    });
    worker = await startWorker({ bindings: authBindings(`${upstream.url}/prefix/`, { MAX_BODY_BYTES: "1024" }) });
    token = await mintHs();
  });
  after(async () => {
    await worker?.mf.dispose();
    await upstream?.close();
  });

  const last = () => upstream.requests.at(-1);
  const post = (body, headers = {}) =>
    fetch(`${worker.url}/v1/chat/completions?trace=1`, {
      method: "POST",
      headers: { ...bearer(token), "content-type": "application/json", ...headers },
      body,
    });

  test("path and query reach the upstream under its base path", async () => {
    assert.equal((await post("{}")).status, 200);
    assert.equal(last().url, "/prefix/v1/chat/completions?trace=1");
    assert.equal(last().method, "POST");
  });

  test("client Authorization is replaced by the gateway key", async () => {
    await post("{}");
    assert.equal(last().headers.authorization, "Bearer gateway-key");
  });

  test("x-client-id carries the token sub, whatever the client sent", async () => {
    await post("{}", { "x-client-id": "spoofed" });
    assert.equal(last().headers["x-client-id"], "client-42");
  });

  test("a valid client x-request-id is kept and echoed", async () => {
    const response = await post("{}", { "x-request-id": "req-123" });
    assert.equal(last().headers["x-request-id"], "req-123");
    assert.equal(response.headers.get("x-request-id"), "req-123");
  });

  test("a missing or unsafe x-request-id is replaced by a UUID", async () => {
    const response = await post("{}", { "x-request-id": "bad id with spaces" });
    assert.match(last().headers["x-request-id"], /^[0-9a-f-]{36}$/);
    assert.equal(response.headers.get("x-request-id"), last().headers["x-request-id"]);
  });

  test("hop-by-hop request headers are dropped", async () => {
    await post("{}", { "proxy-authorization": "Basic x", te: "trailers" });
    assert.equal(last().headers["proxy-authorization"], undefined);
    assert.equal(last().headers.te, undefined);
  });

  test("headers named in the client's Connection header are dropped", async () => {
    // fetch() may not set Connection, so this request goes out through node:http.
    const { hostname, port } = new URL(worker.url);
    const headers = { ...bearer(token), connection: "x-client-hop", "x-client-hop": "1", "x-kept": "1" };
    await new Promise((resolve, reject) => {
      http.request({ host: hostname, port, path: "/v1/models", headers }, (res) => res.resume().on("end", resolve))
        .on("error", reject)
        .end();
    });
    assert.equal(last().headers["x-client-hop"], undefined);
    assert.equal(last().headers["x-kept"], "1");
  });

  test("hop-by-hop response headers are dropped, others kept", async () => {
    const response = await post("{}");
    assert.equal(response.headers.get("x-upstream-hop"), null);
    assert.equal(response.headers.get("x-gateway-backend"), "llamacpp");
  });

  test("the request body reaches the upstream intact", async () => {
    const body = JSON.stringify({ model: "m", messages: [{ role: "user", content: "héllo" }] });
    await post(body);
    assert.equal(last().body, body);
  });

  test("a body over the limit by Content-Length is 413 and not forwarded", async () => {
    const before = upstream.requests.length;
    const error = await errorBody(assert, await post("x".repeat(2048)), 413);
    assert.equal(error.code, "request_too_large");
    assert.equal(upstream.requests.length, before);
  });

  test("a chunked body over the limit is 413", async () => {
    const before = upstream.requests.length;
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 4; i++) controller.enqueue(new TextEncoder().encode("y".repeat(512)));
        controller.close();
      },
    });
    const response = await fetch(`${worker.url}/v1/chat/completions`, {
      method: "POST", headers: bearer(token), body: stream, duplex: "half",
    });
    const error = await errorBody(assert, response, 413);
    assert.equal(error.code, "request_too_large");
    assert.equal(upstream.requests.length, before, "no truncated body may reach upstream");
  });

  test("a chunked body under the limit is forwarded", async () => {
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"a":'));
        controller.enqueue(new TextEncoder().encode("1}"));
        controller.close();
      },
    });
    const response = await fetch(`${worker.url}/v1/chat/completions`, {
      method: "POST", headers: bearer(token), body: stream, duplex: "half",
    });
    assert.equal(response.status, 200);
    assert.equal(last().body, '{"a":1}');
  });

  test("paths outside /v1/ are 404 without auth", async () => {
    const error = await errorBody(assert, await fetch(`${worker.url}/admin`), 404);
    assert.equal(error.code, "not_found");
  });

  test("methods the gateway does not serve are 405 with Allow", async () => {
    const response = await fetch(`${worker.url}/v1/models`, { method: "DELETE", headers: bearer(token) });
    const error = await errorBody(assert, response, 405);
    assert.equal(error.code, "method_not_allowed");
    assert.equal(response.headers.get("allow"), "GET, POST");
  });

  test("upstream status and error body pass through unchanged", async () => {
    const failing = await startUpstream((req, res) => {
      res.writeHead(503, { "content-type": "application/json", "retry-after": "7" });
      res.end('{"error":{"message":"all backends down","type":"server_error","param":null,"code":"no_backend"}}');
    });
    const edge = await startWorker({ bindings: authBindings(failing.url) });
    try {
      const response = await fetch(`${edge.url}/v1/models`, { headers: bearer(token) });
      const error = await errorBody(assert, response, 503);
      assert.equal(error.code, "no_backend");
      assert.equal(response.headers.get("retry-after"), "7");
    } finally {
      await edge.mf.dispose();
      await failing.close();
    }
  });
});

describe("upstream failures and configuration", () => {
  test("an unreachable upstream is 502 with a JSON body", async () => {
    const closed = http.createServer();
    await new Promise((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = closed.address().port;
    await new Promise((resolve) => closed.close(resolve));
    const worker = await startWorker({ bindings: authBindings(`http://127.0.0.1:${port}`) });
    try {
      const response = await fetch(`${worker.url}/v1/models`, { headers: bearer(await mintHs()) });
      const error = await errorBody(assert, response, 502);
      assert.equal(error.code, "upstream_unreachable");
    } finally {
      await worker.mf.dispose();
    }
  });

  test("a misconfigured Worker answers 500 naming the variables", async () => {
    const worker = await startWorker({
      bindings: { UPSTREAM_URL: "not a url", JWT_SECRET: "short", RATE_LIMIT_MODE: "sometimes" },
    });
    try {
      const error = await errorBody(assert, await fetch(`${worker.url}/v1/models`), 500);
      assert.equal(error.code, "worker_misconfigured");
      assert.match(error.message, /UPSTREAM_URL/);
      assert.match(error.message, /JWT_SECRET must be at least 32 bytes/);
      assert.match(error.message, /RATE_LIMIT_MODE/);
      assert.doesNotMatch(error.message, /short/, "the secret's value must never appear");
    } finally {
      await worker.mf.dispose();
    }
  });

  test("binding mode without the RATE_LIMITER binding is refused as misconfigured", async () => {
    const worker = await startWorker({ bindings: authBindings("http://127.0.0.1:9", { RATE_LIMIT_MODE: "binding" }) });
    try {
      const error = await errorBody(assert, await fetch(`${worker.url}/v1/models`), 500);
      assert.match(error.message, /RATE_LIMITER/);
    } finally {
      await worker.mf.dispose();
    }
  });
});
