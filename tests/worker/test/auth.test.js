// The attack matrix: every bad token is a 401 with an OpenAI-shaped body and never reaches upstream;
// valid HS256, RS256 and ES256 tokens pass.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { SignJWT, UnsecuredJWT, exportSPKI, generateKeyPair } from "jose";
import {
  AUDIENCE, ISSUER, authBindings, bearer, errorBody, makeKeys, mint, mintHs, now, startUpstream, startWorker,
} from "./helpers.js";

describe("JWT verification", () => {
  let upstream;
  let worker;
  let keys;

  before(async () => {
    keys = await makeKeys();
    upstream = await startUpstream();
    worker = await startWorker({ bindings: authBindings(upstream.url, { JWT_JWKS: JSON.stringify(keys.jwks) }) });
  });
  after(async () => {
    await worker?.mf.dispose();
    await upstream?.close();
  });

  const call = (headers) => fetch(`${worker.url}/v1/models`, { headers });

  async function assertRejected(headers, messagePattern) {
    const before = upstream.requests.length;
    const response = await call(headers);
    const error = await errorBody(assert, response, 401);
    assert.equal(error.code, "invalid_token");
    assert.match(error.message, messagePattern);
    assert.equal(response.headers.get("www-authenticate"), 'Bearer error="invalid_token"');
    assert.equal(upstream.requests.length, before, "a rejected request must not reach upstream");
  }

  test("valid HS256 token passes", async () => {
    const response = await call(bearer(await mintHs()));
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("x-upstream"), "gateway");
  });

  test("valid RS256 token passes", async () => {
    const token = await mint({ key: keys.rsa.privateKey, alg: "RS256", kid: "rsa-1" });
    assert.equal((await call(bearer(token))).status, 200);
  });

  test("valid ES256 token passes", async () => {
    const token = await mint({ key: keys.ec.privateKey, alg: "ES256", kid: "ec-1" });
    assert.equal((await call(bearer(token))).status, 200);
  });

  test("token expired within the leeway still passes", async () => {
    assert.equal((await call(bearer(await mintHs({ claims: { exp: now() - 10 } })))).status, 200);
  });

  test("missing Authorization is refused", async () => {
    await assertRejected({}, /missing bearer token/);
  });

  test("non-Bearer Authorization is refused", async () => {
    await assertRejected({ authorization: "Basic dXNlcjpwYXNz" }, /Bearer <JWT>/);
  });

  test("garbage token is refused", async () => {
    await assertRejected(bearer("not-a-jwt"), /compact JWS/);
  });

  test("garbage segments are refused", async () => {
    await assertRejected(bearer("%%%.e30.abc"), /header is not a JSON object/);
  });

  test("forged signature (another RSA key, trusted kid) is refused", async () => {
    const attacker = await generateKeyPair("RS256");
    await assertRejected(bearer(await mint({ key: attacker.privateKey, alg: "RS256", kid: "rsa-1" })), /signature is invalid/);
  });

  test("tampered payload is refused", async () => {
    const [header, , signature] = (await mintHs()).split(".");
    const payload = Buffer.from(JSON.stringify({ sub: "admin", iss: ISSUER, aud: AUDIENCE, exp: now() + 300 })).toString("base64url");
    await assertRejected(bearer(`${header}.${payload}.${signature}`), /signature is invalid/);
  });

  test("expired token is refused", async () => {
    await assertRejected(bearer(await mintHs({ claims: { exp: now() - 120 } })), /expired/);
  });

  test("token without exp is refused", async () => {
    await assertRejected(bearer(await mintHs({ claims: { exp: undefined } })), /no numeric exp/);
  });

  test("not-yet-valid token is refused", async () => {
    await assertRejected(bearer(await mintHs({ claims: { nbf: now() + 120 } })), /not valid yet/);
  });

  test("wrong issuer is refused", async () => {
    await assertRejected(bearer(await mintHs({ claims: { iss: "https://evil.test" } })), /issuer/);
  });

  test("wrong audience is refused", async () => {
    await assertRejected(bearer(await mintHs({ claims: { aud: ["other-api"] } })), /audience/);
  });

  test("alg none is refused", async () => {
    const token = new UnsecuredJWT({ sub: "client-42", iss: ISSUER, aud: AUDIENCE }).setExpirationTime("5m").encode();
    await assertRejected(bearer(token), /algorithm "none" is not accepted/);
  });

  test("alg none with a stolen valid signature is refused", async () => {
    const [, payload, signature] = (await mintHs()).split(".");
    const header = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
    await assertRejected(bearer(`${header}.${payload}.${signature}`), /algorithm "none"/);
  });

  test("HS256 signed with the RSA public key (alg confusion) is refused", async () => {
    const publicPem = new TextEncoder().encode(await exportSPKI(keys.rsa.publicKey));
    const token = await mint({ key: publicPem, alg: "HS256", kid: "rsa-1" });
    await assertRejected(bearer(token), /signature is invalid/);
  });

  test("algorithm outside the allowlist (PS256) is refused", async () => {
    const pss = await generateKeyPair("PS256");
    await assertRejected(bearer(await mint({ key: pss.privateKey, alg: "PS256", kid: "rsa-1" })), /algorithm "PS256"/);
  });

  test("unknown kid is refused", async () => {
    await assertRejected(bearer(await mint({ key: keys.rsa.privateKey, alg: "RS256", kid: "rotated-away" })), /kid\) is unknown/);
  });

  test("RS256 token under the EC key's kid is refused", async () => {
    await assertRejected(bearer(await mint({ key: keys.rsa.privateKey, alg: "RS256", kid: "ec-1" })), /kid\) is unknown/);
  });

  test("critical header extension is refused", async () => {
    const token = await new SignJWT({ sub: "c", iss: ISSUER, aud: AUDIENCE, exp: now() + 60, "x-ext": 1 })
      .setProtectedHeader({ alg: "HS256", crit: ["x-ext"], "x-ext": true })
      .sign(new TextEncoder().encode("a-test-secret-of-at-least-32-bytes!!"), { crit: { "x-ext": true } });
    await assertRejected(bearer(token), /critical header/);
  });

  test("oversized token is refused before verification", async () => {
    await assertRejected(bearer(await mintHs({ claims: { padding: "x".repeat(5000) } })), /larger than 4096 bytes/);
  });

  test("token without sub is refused", async () => {
    await assertRejected(bearer(await mintHs({ claims: { sub: undefined } })), /sub claim/);
  });
});

describe("JWT verification without an HS secret", () => {
  test("HS256 token is refused when only asymmetric keys are configured", async () => {
    const keys = await makeKeys();
    const upstream = await startUpstream();
    const worker = await startWorker({
      bindings: authBindings(upstream.url, { JWT_SECRET: undefined, JWT_JWKS: JSON.stringify(keys.jwks) }),
    });
    try {
      const publicPem = new TextEncoder().encode(await exportSPKI(keys.rsa.publicKey));
      const response = await fetch(`${worker.url}/v1/models`, { headers: bearer(await mint({ key: publicPem, alg: "HS256" })) });
      const error = await errorBody(assert, response, 401);
      assert.match(error.message, /no key accepts HS256/);
      assert.equal(upstream.requests.length, 0);
    } finally {
      await worker.mf.dispose();
      await upstream.close();
    }
  });
});

describe("verified-token cache", () => {
  test("a token seen before is still refused once it expires", async () => {
    const upstream = await startUpstream();
    const worker = await startWorker({ bindings: authBindings(upstream.url, { JWT_LEEWAY_S: "1" }) });
    try {
      const token = await mintHs({ claims: { exp: now() + 1 } });
      const call = () => fetch(`${worker.url}/v1/models`, { headers: bearer(token) });
      assert.equal((await call()).status, 200);
      await new Promise((resolve) => setTimeout(resolve, 3100));
      const error = await errorBody(assert, await call(), 401);
      assert.match(error.message, /expired/);
    } finally {
      await worker.mf.dispose();
      await upstream.close();
    }
  });
});
