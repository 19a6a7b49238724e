// Rate limits keyed on the token's sub: the exact Durable Object limiter and the Rate Limiting binding.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { authBindings, bearer, errorBody, mintHs, startUpstream, startWorker } from "./helpers.js";

const LIMIT = 5;
const PERIOD_S = 60;

async function burst(url, token, count) {
  const responses = await Promise.all(
    Array.from({ length: count }, () => fetch(`${url}/v1/models`, { headers: bearer(token) })),
  );
  await Promise.all(responses.map((response) => response.arrayBuffer()));
  return responses;
}

/** The Worker limiting LIMIT requests per PERIOD_S in `mode`, before `upstream`. */
function limitedWorker(mode, upstream, options = {}) {
  return startWorker({
    durableObjects: mode === "do",
    rateLimit: mode === "binding" ? { limit: LIMIT, period: PERIOD_S } : null,
    bindings: authBindings(upstream.url, {
      RATE_LIMIT_MODE: mode,
      RATE_LIMIT_REQUESTS: String(LIMIT),
      RATE_LIMIT_PERIOD_S: String(PERIOD_S),
    }),
    ...options,
  });
}

describe("Durable Object limiter (RATE_LIMIT_MODE=do)", () => {
  let upstream;
  let worker;

  before(async () => {
    upstream = await startUpstream();
    worker = await limitedWorker("do", upstream);
  });
  after(async () => {
    await worker?.mf.dispose();
    await upstream?.close();
  });

  test("exactly N requests of a concurrent burst pass", async () => {
    const responses = await burst(worker.url, await mintHs({ claims: { sub: "burst" } }), LIMIT + 3);
    const statuses = responses.map((response) => response.status).sort();
    assert.deepEqual(statuses, [...Array(LIMIT).fill(200), ...Array(3).fill(429)]);
    assert.equal(upstream.requests.filter((r) => r.headers["x-client-id"] === "burst").length, LIMIT);
  });

  test("the (N+1)th request is 429 with Retry-After and RateLimit headers", async () => {
    const token = await mintHs({ claims: { sub: "sequential" } });
    for (let i = 0; i < LIMIT; i++) {
      const response = await fetch(`${worker.url}/v1/models`, { headers: bearer(token) });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("ratelimit"), `"per-sub";r=${LIMIT - 1 - i};t=${(PERIOD_S / LIMIT) * (i + 1)}`);
      await response.arrayBuffer();
    }
    const response = await fetch(`${worker.url}/v1/models`, { headers: bearer(token) });
    const error = await errorBody(assert, response, 429);
    assert.equal(error.code, "rate_limit_exceeded");
    assert.equal(response.headers.get("retry-after"), String(PERIOD_S / LIMIT));
    assert.equal(response.headers.get("ratelimit-policy"), `"per-sub";q=${LIMIT};w=${PERIOD_S}`);
    assert.match(response.headers.get("ratelimit"), /^"per-sub";r=0;t=\d+$/);
  });

  test("each sub has its own allowance", async () => {
    await burst(worker.url, await mintHs({ claims: { sub: "noisy" } }), LIMIT + 1);
    const response = await fetch(`${worker.url}/v1/models`, { headers: bearer(await mintHs({ claims: { sub: "quiet" } })) });
    assert.equal(response.status, 200);
  });
});

describe("Durable Object limiter across a restart", () => {
  test("a restarted limiter forgets at most half a period's allowance", async () => {
    const persist = await mkdtemp(path.join(tmpdir(), "worker-do-"));
    const upstream = await startUpstream();
    const token = await mintHs({ claims: { sub: "restarted" } });
    try {
      const first = await limitedWorker("do", upstream, { durableObjectsPersist: persist });
      await burst(first.url, token, LIMIT);
      await first.mf.dispose();
      const second = await limitedWorker("do", upstream, { durableObjectsPersist: persist });
      try {
        const passed = (await burst(second.url, token, LIMIT)).filter((r) => r.status === 200).length;
        assert.ok(passed <= Math.ceil(LIMIT / 2), `${passed} of ${LIMIT} passed after the restart`);
      } finally {
        await second.mf.dispose();
      }
    } finally {
      await upstream.close();
      await rm(persist, { recursive: true, force: true });
    }
  });
});

describe("Rate Limiting binding (RATE_LIMIT_MODE=binding)", () => {
  let upstream;
  let worker;

  before(async () => {
    upstream = await startUpstream();
    worker = await limitedWorker("binding", upstream);
  });
  after(async () => {
    await worker?.mf.dispose();
    await upstream?.close();
  });

  test("the binding's limit turns the (N+1)th request into a 429 with headers", async () => {
    const token = await mintHs({ claims: { sub: "binding-burst" } });
    // Miniflare counts in fixed wall-clock windows: start well inside one, so the burst cannot
    // straddle two and pass 2N.
    const untilNextWindow = PERIOD_S * 1000 - (Date.now() % (PERIOD_S * 1000));
    if (untilNextWindow < 2000) await new Promise((resolve) => setTimeout(resolve, untilNextWindow + 50));
    const statuses = [];
    let last;
    for (let i = 0; i <= LIMIT; i++) {
      last = await fetch(`${worker.url}/v1/models`, { headers: bearer(token) });
      statuses.push(last.status);
      if (i < LIMIT) await last.arrayBuffer();
    }
    assert.deepEqual(statuses, [...Array(LIMIT).fill(200), 429]);
    await errorBody(assert, last, 429);
    assert.equal(last.headers.get("retry-after"), String(PERIOD_S));
    assert.equal(last.headers.get("ratelimit-policy"), `"per-sub";q=${LIMIT};w=${PERIOD_S}`);
    assert.equal(last.headers.get("ratelimit"), `"per-sub";r=0;t=${PERIOD_S}`);
  });
});
