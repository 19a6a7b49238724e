// Shared by the Worker tests: the real Worker in workerd (Miniflare), a recording upstream, and
// tokens minted by jose (a reference implementation), never by the Worker's own code.
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare } from "miniflare";
import { SignJWT, exportJWK, generateKeyPair } from "jose";

export const WORKER_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../files/worker.js");
export const COMPATIBILITY_DATE = "2026-04-01";
export const ISSUER = "https://issuer.test";
export const AUDIENCE = "llm-canary";
export const HS_SECRET = "a-test-secret-of-at-least-32-bytes!!";

/** Start the Worker in workerd with these vars/bindings; returns the Miniflare and its base URL. */
export async function startWorker({
  bindings = {},
  rateLimit = null,
  durableObjects = false,
  scriptPath = WORKER_PATH,
  cachePersist = undefined,
  durableObjectsPersist = undefined,
} = {}) {
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: path.dirname(scriptPath),
    compatibilityDate: COMPATIBILITY_DATE,
    bindings: Object.fromEntries(Object.entries(bindings).filter(([, value]) => value !== undefined)),
    ratelimits: rateLimit ? { RATE_LIMITER: { simple: rateLimit } } : undefined,
    durableObjects: durableObjects ? { RATE_LIMIT_DO: "RateLimiter" } : undefined,
    cachePersist,
    durableObjectsPersist,
    port: 0,
  });
  const url = await mf.ready;
  return { mf, url: url.href.replace(/\/$/, "") };
}

/**
 * A real HTTP server standing in for the gateway (or a JWKS host). `handler(req, res, body)`
 * answers; every request is recorded with its headers and full body.
 */
export async function startUpstream(handler = defaultUpstream) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const record = { method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks).toString() };
    requests.push(record);
    await handler(req, res, record);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

function defaultUpstream(req, res) {
  res.writeHead(200, { "content-type": "application/json", "x-upstream": "gateway" });
  res.end(JSON.stringify({ object: "list", data: [] }));
}

export const now = () => Math.floor(Date.now() / 1000);

/** Signing keys of each accepted algorithm, and the JWKS that publishes their public halves. */
export async function makeKeys() {
  const rsa = await generateKeyPair("RS256", { extractable: true });
  const ec = await generateKeyPair("ES256", { extractable: true });
  const jwk = async (pair, kid, alg) => ({ ...(await exportJWK(pair.publicKey)), kid, alg, use: "sig" });
  return {
    rsa,
    ec,
    jwks: { keys: [await jwk(rsa, "rsa-1", "RS256"), await jwk(ec, "ec-1", "ES256")] },
  };
}

/** A token signed by jose; `claims` and `header` override the valid defaults. */
export async function mint({ key, alg, kid, claims = {}, header = {} }) {
  const base = { sub: "client-42", iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 300 };
  const payload = Object.fromEntries(Object.entries({ ...base, ...claims }).filter(([, v]) => v !== undefined));
  return new SignJWT(payload).setProtectedHeader({ alg, ...(kid ? { kid } : {}), ...header }).sign(key);
}

export const hsKey = new TextEncoder().encode(HS_SECRET);
export const mintHs = (options = {}) => mint({ key: hsKey, alg: "HS256", ...options });

export function authBindings(upstreamUrl, extra = {}) {
  return {
    UPSTREAM_URL: upstreamUrl,
    UPSTREAM_API_KEY: "gateway-key",
    JWT_SECRET: HS_SECRET,
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    RATE_LIMIT_MODE: "off",
    ...extra,
  };
}

export const bearer = (token) => ({ authorization: `Bearer ${token}` });

/** Assert an OpenAI-shaped error body and return it. */
export async function errorBody(assert, response, status) {
  assert.equal(response.status, status);
  assert.equal(response.headers.get("content-type"), "application/json");
  const body = await response.json();
  assert.equal(typeof body.error.message, "string");
  assert.equal(typeof body.error.type, "string");
  assert.ok("param" in body.error && "code" in body.error);
  return body.error;
}
