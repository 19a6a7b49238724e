// Keys from JWT_JWKS_URL: fetched once, shared through the Cache API, refreshed for an unknown kid
// at most once per cooldown, and a JWKS host that is down is a 503 (our fault), not a 401.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { exportJWK, generateKeyPair } from "jose";
import { HS_SECRET, authBindings, bearer, errorBody, mint, mintHs, startUpstream, startWorker } from "./helpers.js";

async function signingKey(kid) {
  const pair = await generateKeyPair("RS256", { extractable: true });
  return { kid, privateKey: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: "RS256" } };
}

/**
 * The Worker stores the JWKS with waitUntil; wait until that write has landed (under the key the
 * Worker uses, see RemoteJwks in files/worker.js) before the isolate goes away.
 */
async function cacheSettled(instance, jwksUrl) {
  const cache = (await instance.mf.getCaches()).default;
  const key = `https://jwks.llm-canary.invalid/keys?url=${encodeURIComponent(jwksUrl)}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await cache.match(key)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.fail("the JWKS never reached the Cache API");
}

describe("JWKS from JWT_JWKS_URL", () => {
  let gateway;
  let jwksHost;
  let published;
  let jwksUp;
  let persistDir;
  const started = [];

  const jwksFetches = () => jwksHost.requests.length;
  const bindings = (extra) =>
    authBindings(gateway.url, {
      JWT_SECRET: undefined,
      JWT_JWKS_URL: `${jwksHost.url}/jwks.json`,
      JWT_JWKS_REFRESH_COOLDOWN_S: "30",
      ...extra,
    });
  async function worker(extra = {}) {
    const instance = await startWorker({ bindings: bindings(extra), cachePersist: persistDir });
    started.push(instance);
    return instance;
  }
  const call = async (instance, key) =>
    fetch(`${instance.url}/v1/models`, { headers: bearer(await mint({ key: key.privateKey, alg: "RS256", kid: key.kid })) });

  beforeEach(async () => {
    published = [await signingKey("k1")];
    jwksUp = true;
    persistDir = await mkdtemp(path.join(tmpdir(), "worker-cache-"));
    gateway = await startUpstream();
    jwksHost = await startUpstream((req, res) => {
      if (!jwksUp) {
        res.writeHead(500).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ keys: published.map((key) => key.jwk) }));
    });
  });
  afterEach(async () => {
    for (const instance of started.splice(0)) await instance.mf.dispose();
    await gateway.close();
    await jwksHost.close();
    await rm(persistDir, { recursive: true, force: true });
  });

  test("a token signed by a published key passes", async () => {
    assert.equal((await call(await worker(), published[0])).status, 200);
  });

  test("the JWKS is fetched once for many requests", async () => {
    const instance = await worker();
    for (let i = 0; i < 5; i++) assert.equal((await call(instance, published[0])).status, 200);
    assert.equal(jwksFetches(), 1);
  });

  test("a new isolate reuses the JWKS from the Cache API", async () => {
    const first = await worker();
    assert.equal((await call(first, published[0])).status, 200);
    await cacheSettled(first, `${jwksHost.url}/jwks.json`);
    await first.mf.dispose();
    started.splice(started.indexOf(first), 1);
    assert.equal((await call(await worker(), published[0])).status, 200);
    assert.equal(jwksFetches(), 1);
  });

  test("an unknown kid refreshes the JWKS, so a rotated-in key passes", async () => {
    const instance = await worker();
    assert.equal((await call(instance, published[0])).status, 200);
    published.push(await signingKey("k2"));
    assert.equal((await call(instance, published[1])).status, 200);
    assert.equal(jwksFetches(), 2);
  });

  test("an isolate that meets a new kid just after another isolate refreshed takes the stored keys", async () => {
    const first = await worker();
    const second = await worker();
    assert.equal((await call(first, published[0])).status, 200);
    await cacheSettled(first, `${jwksHost.url}/jwks.json`);
    assert.equal((await call(second, published[0])).status, 200); // k1 from the Cache API
    assert.equal(jwksFetches(), 1);
    published.push(await signingKey("k2"));
    assert.equal((await call(first, published[1])).status, 200); // refreshes, stores k1 and k2
    assert.equal(jwksFetches(), 2);
    // Wait until the first isolate's cooldown marker and refreshed keys (waitUntil writes) have landed.
    const cache = (await first.mf.getCaches()).default;
    const url = encodeURIComponent(`${jwksHost.url}/jwks.json`);
    const landed = async () =>
      (await cache.match(`https://jwks.llm-canary.invalid/refreshed?url=${url}`)) &&
      (await (await cache.match(`https://jwks.llm-canary.invalid/keys?url=${url}`))?.text())?.includes('"k2"');
    for (let attempt = 0; attempt < 100 && !(await landed()); attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal((await call(second, published[1])).status, 200, "the second isolate took the refreshed keys");
    assert.equal(jwksFetches(), 2, "within the cooldown the JWKS host is not asked again");
  });

  test("a flood of unknown kids refreshes at most once per cooldown", async () => {
    const instance = await worker();
    assert.equal((await call(instance, published[0])).status, 200);
    for (let i = 0; i < 10; i++) {
      const response = await call(instance, await signingKey(`bogus-${i}`));
      const error = await errorBody(assert, response, 401);
      assert.match(error.message, /kid\) is unknown/);
    }
    assert.equal(jwksFetches(), 2);
  });

  test("a JWKS host that goes down leaves the known keys in use, fetched once per cooldown", async () => {
    const instance = await worker({ JWT_JWKS_CACHE_TTL_S: "1" });
    assert.equal((await call(instance, published[0])).status, 200);
    jwksUp = false;
    await new Promise((resolve) => setTimeout(resolve, 1100));
    for (let i = 0; i < 5; i++) assert.equal((await call(instance, published[0])).status, 200);
    assert.equal(jwksFetches(), 2);
  });

  test("a JWKS host that is down does not stop tokens a local key verifies", async () => {
    jwksUp = false;
    const instance = await worker({ JWT_SECRET: HS_SECRET });
    assert.equal((await fetch(`${instance.url}/v1/models`, { headers: bearer(await mintHs()) })).status, 200);
  });

  test("a JWKS host that is down, with no keys yet, is 503 jwks_unavailable", async () => {
    jwksUp = false;
    const instance = await worker();
    const response = await call(instance, published[0]);
    const error = await errorBody(assert, response, 503);
    assert.equal(error.code, "jwks_unavailable");
    assert.ok(Number(response.headers.get("retry-after")) >= 1);
    await errorBody(assert, await call(instance, published[0]), 503);
    assert.equal(jwksFetches(), 1, "a host that is down is not asked again within the cooldown");
    assert.equal(gateway.requests.length, 0);
  });
});
