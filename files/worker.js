/**
 * llm-canary edge Worker: verifies the caller's JWT, rate-limits per token `sub`, and proxies
 * `/v1/*` to the model gateway with the gateway's own key. Contract: CONTRACTS.md §3.
 *
 * Bindings (all documented in docs/worker.md):
 *   UPSTREAM_URL              var     gateway base URL, without /v1
 *   UPSTREAM_API_KEY          secret  sent upstream as `Authorization: Bearer …`
 *   JWT_SECRET                secret  HS256 key (at least 32 bytes)
 *   JWT_JWKS / JWT_JWKS_URL   var     JWKS JSON / URL of a JWKS (RS256, ES256, HS256 keys)
 *   JWT_ISSUER, JWT_AUDIENCE  var     required `iss` / accepted `aud` when set
 *   RATE_LIMIT_MODE           var     binding (default) | do | off
 *   RATE_LIMITER              Workers Rate Limiting binding (mode binding)
 *   RATE_LIMIT_DO             Durable Object namespace of class RateLimiter (mode do)
 *   RATE_LIMIT_REQUESTS, RATE_LIMIT_PERIOD_S   vars  the limit per `sub`
 *
 * Every error is an OpenAI-shaped JSON body: {"error": {"message", "type", "param", "code"}}.
 */
import { DurableObject } from "cloudflare:workers";

/** WebCrypto parameters of the JWS algorithms we accept; anything else (`none` included) is refused. */
const ALGORITHMS = {
  HS256: { importParams: { name: "HMAC", hash: "SHA-256" }, verifyParams: { name: "HMAC" } },
  RS256: {
    importParams: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    verifyParams: { name: "RSASSA-PKCS1-v1_5" },
  },
  ES256: {
    importParams: { name: "ECDSA", namedCurve: "P-256" },
    verifyParams: { name: "ECDSA", hash: "SHA-256" },
  },
};

/** The methods the gateway serves under /v1; the Worker forwards nothing else. */
const ALLOWED_METHODS = ["GET", "POST"];

/** RFC 9110 §7.6.1 hop-by-hop headers: meaningful for one connection only, never forwarded. */
const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
/** `sub` becomes the x-client-id header and the rate-limit key: printable ASCII only. */
const SUB_PATTERN = /^[\x20-\x7e]{1,256}$/;
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]*$/;
const RATE_LIMIT_POLICY = "per-sub";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** An error that becomes an OpenAI-shaped JSON response. */
class HttpError extends Error {
  constructor(status, type, code, message, headers = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = code;
    this.headers = headers;
  }
}

const unauthorized = (message) =>
  new HttpError(401, "invalid_request_error", "invalid_token", message, {
    "www-authenticate": 'Bearer error="invalid_token"',
  });

function errorResponse(error, requestId) {
  const body = { error: { message: error.message, type: error.type, param: null, code: error.code } };
  return new Response(JSON.stringify(body), {
    status: error.status,
    headers: { "content-type": "application/json", "x-request-id": requestId, ...error.headers },
  });
}

// ---------------------------------------------------------------------------------------------
// Configuration: parsed once per isolate and env, every problem named with its variable.

function positiveInt(env, name, fallback, problems) {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    problems.push(`${name} must be a positive integer, got ${JSON.stringify(String(raw))}`);
    return fallback;
  }
  return value;
}

function parseConfig(env) {
  const problems = [];
  let upstreamBase = null;
  try {
    const url = new URL(env.UPSTREAM_URL ?? "");
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new TypeError("not http(s)");
    upstreamBase = url.origin + url.pathname.replace(/\/+$/, "");
  } catch {
    problems.push("UPSTREAM_URL must be an http(s) URL (the gateway's base URL, without /v1)");
  }

  const hasSecret = typeof env.JWT_SECRET === "string" && env.JWT_SECRET !== "";
  if (hasSecret && encoder.encode(env.JWT_SECRET).length < 32) {
    problems.push("JWT_SECRET must be at least 32 bytes (RFC 7518 §3.2)");
  }
  let staticJwks = [];
  if (env.JWT_JWKS) {
    try {
      const jwks = typeof env.JWT_JWKS === "string" ? JSON.parse(env.JWT_JWKS) : env.JWT_JWKS;
      if (!Array.isArray(jwks?.keys)) throw new TypeError("no keys array");
      staticJwks = jwks.keys;
    } catch {
      problems.push('JWT_JWKS must be a JWKS JSON document: {"keys": [...]}');
    }
  }
  let jwksUrl = null;
  if (env.JWT_JWKS_URL) {
    try {
      jwksUrl = new URL(env.JWT_JWKS_URL).href;
    } catch {
      problems.push("JWT_JWKS_URL must be a URL");
    }
  }
  if (!hasSecret && !env.JWT_JWKS && !env.JWT_JWKS_URL) {
    problems.push("set JWT_SECRET, JWT_JWKS or JWT_JWKS_URL: without a key no token can be verified");
  }

  const rateLimitMode = env.RATE_LIMIT_MODE || "binding";
  if (!["binding", "do", "off"].includes(rateLimitMode)) {
    problems.push(`RATE_LIMIT_MODE must be binding, do or off, got ${JSON.stringify(rateLimitMode)}`);
  } else if (rateLimitMode === "binding" && typeof env.RATE_LIMITER?.limit !== "function") {
    problems.push("RATE_LIMIT_MODE=binding needs the RATE_LIMITER rate limiting binding");
  } else if (rateLimitMode === "do" && typeof env.RATE_LIMIT_DO?.idFromName !== "function") {
    problems.push("RATE_LIMIT_MODE=do needs the RATE_LIMIT_DO Durable Object binding (class RateLimiter)");
  }

  return {
    problems,
    upstreamBase,
    upstreamApiKey: env.UPSTREAM_API_KEY || null,
    issuer: env.JWT_ISSUER || null,
    audience: env.JWT_AUDIENCE || null,
    leewayS: positiveInt(env, "JWT_LEEWAY_S", 30, problems),
    maxTokenBytes: positiveInt(env, "JWT_MAX_BYTES", 4096, problems),
    maxBodyBytes: positiveInt(env, "MAX_BODY_BYTES", 1048576, problems),
    rateLimitMode,
    rateLimitRequests: positiveInt(env, "RATE_LIMIT_REQUESTS", 60, problems),
    rateLimitPeriodS: positiveInt(env, "RATE_LIMIT_PERIOD_S", 60, problems),
    keys: new KeyStore({
      secret: hasSecret ? env.JWT_SECRET : null,
      staticJwks,
      remote: jwksUrl
        ? remoteJwksFor(
            jwksUrl,
            positiveInt(env, "JWT_JWKS_CACHE_TTL_S", 600, problems),
            positiveInt(env, "JWT_JWKS_REFRESH_COOLDOWN_S", 30, problems),
          )
        : null,
    }),
  };
}

let configCache = { env: null, config: null };

function configFor(env) {
  if (configCache.env !== env) configCache = { env, config: parseConfig(env) };
  return configCache.config;
}

// ---------------------------------------------------------------------------------------------
// Keys: each key verifies exactly one algorithm, so an HS key never checks an RS/ES token.

/** The one algorithm a JWK may verify, from its `alg` or else its key type; null: not a signing key. */
function jwkAlgorithm(jwk) {
  if (jwk.use !== undefined && jwk.use !== "sig") return null;
  const byType = { RSA: "RS256", oct: "HS256", EC: jwk.crv === "P-256" ? "ES256" : null }[jwk.kty] ?? null;
  if (jwk.alg !== undefined) return jwk.alg === byType ? jwk.alg : null;
  return byType;
}

async function importJwks(jwks) {
  const imported = await Promise.all(
    jwks.map(async (jwk) => {
      const alg = jwkAlgorithm(jwk);
      if (alg === null) return null;
      try {
        const key = await crypto.subtle.importKey(
          "jwk",
          { ...jwk, key_ops: undefined, ext: undefined },
          ALGORITHMS[alg].importParams,
          false,
          ["verify"],
        );
        return { kid: typeof jwk.kid === "string" ? jwk.kid : null, alg, key };
      } catch (err) {
        console.warn(`skipping a JWK that WebCrypto refused (kid ${JSON.stringify(jwk.kid)}): ${err.message}`);
        return null;
      }
    }),
  );
  return imported.filter((key) => key !== null);
}

/** A JWKS fetched from JWT_JWKS_URL, shared by isolates through the Cache API. */
class RemoteJwks {
  constructor(url, ttlS, cooldownS) {
    this.url = url;
    this.ttlMs = ttlS * 1000;
    this.cooldownMs = cooldownS * 1000;
    this.cacheKey = `https://jwks.llm-canary.invalid/keys?url=${encodeURIComponent(url)}`;
    this.cooldownKey = `https://jwks.llm-canary.invalid/refreshed?url=${encodeURIComponent(url)}`;
    this.keys = null;
    this.expiresAt = 0;
    this.lastRefreshAt = -Infinity;
    this.loading = null;
  }

  /** The current keys: from memory, else the Cache API, else the JWKS host. */
  async current(ctx) {
    if (Date.now() < this.expiresAt) return this.keysOrUnavailable();
    return this.load(ctx, { bypassCache: false });
  }

  /**
   * Refetch because a token named a kid we do not know (the issuer may have rotated keys), at most
   * once per cooldown across isolates, so a flood of made-up kids cannot hammer the JWKS host.
   */
  async refreshForUnknownKid(ctx) {
    const now = Date.now();
    if (now - this.lastRefreshAt < this.cooldownMs) return this.keys ?? [];
    this.lastRefreshAt = now;
    const cache = caches.default;
    // Another isolate refreshed within the cooldown: take what it stored.
    if (await cache.match(this.cooldownKey)) return this.load(ctx, { bypassCache: false });
    ctx.waitUntil(
      cache.put(this.cooldownKey, new Response("", { headers: { "cache-control": `max-age=${this.cooldownMs / 1000}` } })),
    );
    return this.load(ctx, { bypassCache: true });
  }

  load(ctx, { bypassCache }) {
    // One fetch per isolate at a time; concurrent requests share its result.
    this.loading ??= this.fetchKeys(ctx, bypassCache).finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  async fetchKeys(ctx, bypassCache) {
    const cache = caches.default;
    let body = null;
    if (!bypassCache) {
      const cached = await cache.match(this.cacheKey);
      if (cached) body = await cached.text();
    }
    if (body === null) {
      let response;
      try {
        response = await fetch(this.url, { headers: { accept: "application/json" } });
      } catch (err) {
        return this.keepStale(`JWKS fetch from ${this.url} failed: ${err.message}`);
      }
      if (!response.ok) return this.keepStale(`JWKS fetch from ${this.url} answered ${response.status}`);
      body = await response.text();
      let parsed;
      try {
        parsed = JSON.parse(body);
      } catch {
        return this.keepStale(`JWKS from ${this.url} is not JSON`);
      }
      if (!Array.isArray(parsed?.keys)) return this.keepStale(`JWKS from ${this.url} has no keys array`);
      ctx.waitUntil(
        cache.put(
          this.cacheKey,
          new Response(body, { headers: { "cache-control": `max-age=${this.ttlMs / 1000}` } }),
        ),
      );
    }
    this.keys = await importJwks(JSON.parse(body).keys);
    this.expiresAt = Date.now() + this.ttlMs;
    return this.keys;
  }

  /**
   * A failed fetch keeps the keys we had and is not retried for a cooldown, so a JWKS host that is
   * down does not get a fetch per request.
   */
  keepStale(reason) {
    console.error(reason);
    this.expiresAt = Date.now() + this.cooldownMs;
    return this.keysOrUnavailable();
  }

  /** With no keys at all no token can be checked: that is our failure (503), not the client's (401). */
  keysOrUnavailable() {
    if (this.keys !== null) return this.keys;
    throw new HttpError(503, "server_error", "jwks_unavailable", "the token signing keys are unavailable; retry later", {
      "retry-after": String(Math.max(1, Math.ceil((this.expiresAt - Date.now()) / 1000))),
    });
  }
}

/** One RemoteJwks per URL and isolate, so its memory cache and cooldown outlive any one env object. */
const remoteJwksByUrl = new Map();

function remoteJwksFor(url, ttlS, cooldownS) {
  const key = `${url} ${ttlS} ${cooldownS}`;
  if (!remoteJwksByUrl.has(key)) remoteJwksByUrl.set(key, new RemoteJwks(url, ttlS, cooldownS));
  return remoteJwksByUrl.get(key);
}

class KeyStore {
  constructor({ secret, staticJwks, remote }) {
    this.staticKeys = null;
    this.secret = secret;
    this.staticJwks = staticJwks;
    this.remote = remote;
  }

  async localKeys() {
    this.staticKeys ??= (async () => {
      const keys = await importJwks(this.staticJwks);
      if (this.secret !== null) {
        const key = await crypto.subtle.importKey(
          "raw",
          encoder.encode(this.secret),
          ALGORITHMS.HS256.importParams,
          false,
          ["verify"],
        );
        keys.push({ kid: null, alg: "HS256", key });
      }
      return keys;
    })();
    return this.staticKeys;
  }

  /** The keys that may verify a token with this header: same algorithm, and same kid when both have one. */
  async candidates(alg, kid, ctx) {
    const matching = (keys) => keys.filter((key) => key.alg === alg && (kid === null || key.kid === null || key.kid === kid));
    let found = matching(await this.localKeys());
    if (this.remote !== null) {
      let remote = [];
      try {
        remote = matching(await this.remote.current(ctx));
      } catch (err) {
        // A JWKS host that is down only matters when no local key could verify this token.
        if (found.length === 0) throw err;
      }
      found = found.concat(remote);
      if (found.length === 0 && kid !== null) found = matching(await this.remote.refreshForUnknownKid(ctx));
    }
    return found;
  }
}

// ---------------------------------------------------------------------------------------------
// JWT verification (RFC 7519 / 7515), compact serialisation only.

function base64UrlDecode(segment) {
  if (!BASE64URL_PATTERN.test(segment)) throw unauthorized("token is not base64url");
  const base64 = segment.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

function decodeJsonSegment(segment, what) {
  try {
    const value = JSON.parse(decoder.decode(base64UrlDecode(segment)));
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new TypeError();
    return value;
  } catch {
    throw unauthorized(`token ${what} is not a JSON object`);
  }
}

function bearerToken(request, config) {
  const authorization = request.headers.get("authorization");
  if (authorization === null) throw unauthorized("missing bearer token (Authorization: Bearer <JWT>)");
  // Checked before any parsing, so an oversized header costs us nothing.
  if (authorization.length > config.maxTokenBytes + 7) {
    throw unauthorized(`token larger than ${config.maxTokenBytes} bytes`);
  }
  const match = /^Bearer +([^ ]+)$/i.exec(authorization);
  if (match === null) throw unauthorized("Authorization must be: Bearer <JWT>");
  return match[1];
}

/**
 * Tokens whose signature this isolate has verified, so a client's next request skips the
 * signature check (the claims are still checked every time: exp, nbf, iss, aud, sub). Bounded;
 * the oldest entry goes first. A key withdrawn from the JWKS stops new tokens at once, and
 * tokens already seen at their `exp`.
 */
const verifiedTokens = new Map();
const VERIFIED_TOKENS_MAX = 1024;

async function verifyToken(token, config, ctx) {
  const cached = verifiedTokens.get(token);
  if (cached !== undefined && cached.config === config) {
    checkClaims(cached.claims, config);
    return cached.claims;
  }
  const claims = await verifySignedToken(token, config, ctx);
  if (verifiedTokens.size >= VERIFIED_TOKENS_MAX) verifiedTokens.delete(verifiedTokens.keys().next().value);
  verifiedTokens.set(token, { config, claims });
  return claims;
}

async function verifySignedToken(token, config, ctx) {
  const parts = token.split(".");
  if (parts.length !== 3) throw unauthorized("token is not a compact JWS (header.payload.signature)");
  const header = decodeJsonSegment(parts[0], "header");
  const alg = header.alg;
  if (typeof alg !== "string" || !Object.hasOwn(ALGORITHMS, alg)) {
    throw unauthorized(`token algorithm ${JSON.stringify(String(alg)).slice(0, 40)} is not accepted`);
  }
  // RFC 7515 §4.1.11: extensions we do not understand must be refused.
  if (header.crit !== undefined) throw unauthorized("token has critical header extensions we do not support");
  const kid = typeof header.kid === "string" ? header.kid : null;

  const keys = await config.keys.candidates(alg, kid, ctx);
  if (keys.length === 0) {
    throw unauthorized(kid !== null ? "token key id (kid) is unknown" : `no key accepts ${alg} tokens`);
  }
  const signature = base64UrlDecode(parts[2]);
  const signed = encoder.encode(`${parts[0]}.${parts[1]}`);
  let verified = false;
  for (const { key } of keys) {
    if (await crypto.subtle.verify(ALGORITHMS[alg].verifyParams, key, signature, signed)) {
      verified = true;
      break;
    }
  }
  if (!verified) throw unauthorized("token signature is invalid");

  const claims = decodeJsonSegment(parts[1], "payload");
  checkClaims(claims, config);
  return claims;
}

function checkClaims(claims, config) {
  const now = Date.now() / 1000;
  if (typeof claims.exp !== "number") throw unauthorized("token has no numeric exp claim");
  if (now - config.leewayS >= claims.exp) throw unauthorized("token has expired");
  if (claims.nbf !== undefined && (typeof claims.nbf !== "number" || now + config.leewayS < claims.nbf)) {
    throw unauthorized("token is not valid yet (nbf)");
  }
  if (config.issuer !== null && claims.iss !== config.issuer) throw unauthorized("token issuer is not accepted");
  if (config.audience !== null) {
    const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
    if (!audiences.includes(config.audience)) throw unauthorized("token audience is not accepted");
  }
  if (typeof claims.sub !== "string" || !SUB_PATTERN.test(claims.sub)) {
    throw unauthorized("token sub claim must be 1-256 printable ASCII characters");
  }
}

// ---------------------------------------------------------------------------------------------
// Rate limits keyed on `sub`; headers per draft-ietf-httpapi-ratelimit-headers.

function rateLimitHeaders(config, remaining, resetS) {
  const headers = { "ratelimit-policy": `"${RATE_LIMIT_POLICY}";q=${config.rateLimitRequests};w=${config.rateLimitPeriodS}` };
  if (remaining !== null) headers.ratelimit = `"${RATE_LIMIT_POLICY}";r=${remaining};t=${resetS}`;
  return headers;
}

function tooManyRequests(headers, retryAfterS) {
  return new HttpError(429, "rate_limit_error", "rate_limit_exceeded", `rate limit exceeded; retry after ${retryAfterS} s`, {
    ...headers,
    "retry-after": String(retryAfterS),
  });
}

/** Takes one request from `sub`'s allowance; returns the headers to add, or throws a 429. */
async function enforceRateLimit(config, env, sub) {
  if (config.rateLimitMode === "off") return {};
  if (config.rateLimitMode === "binding") {
    // The binding counts per Cloudflare location and tells only yes or no.
    const { success } = await env.RATE_LIMITER.limit({ key: sub });
    if (!success) throw tooManyRequests(rateLimitHeaders(config, 0, config.rateLimitPeriodS), config.rateLimitPeriodS);
    return rateLimitHeaders(config, null, null);
  }
  const limiter = env.RATE_LIMIT_DO.get(env.RATE_LIMIT_DO.idFromName(sub));
  const verdict = await limiter.take(config.rateLimitRequests, config.rateLimitPeriodS * 1000);
  const headers = rateLimitHeaders(config, verdict.remaining, Math.ceil(verdict.resetMs / 1000));
  if (!verdict.allowed) throw tooManyRequests(headers, Math.max(1, Math.ceil(verdict.retryAfterMs / 1000)));
  return headers;
}

/**
 * Exact limiter, one object per `sub`: GCRA (a leaky bucket kept as one timestamp, the
 * "theoretical arrival time"), so exactly `limit` requests pass in a burst and the allowance
 * refills evenly over the period. The object answers from memory; its storage copy is written
 * only when the timestamp has moved half a period since the last write (a write per request
 * costs a storage round trip and is billed), so a restarted object forgets at most half a
 * period's allowance.
 */
export class RateLimiter extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    this.tat = 0;
    this.persistedTat = 0;
    ctx.blockConcurrencyWhile(async () => {
      this.tat = this.persistedTat = (await ctx.storage.get("tat")) ?? 0;
    });
  }

  take(limit, periodMs) {
    const now = Date.now();
    const interval = periodMs / limit;
    const start = Math.max(this.tat, now);
    const next = start + interval;
    // The epsilon absorbs float error in limit * (period / limit).
    if (next - now > periodMs + 1e-6) {
      return { allowed: false, remaining: 0, resetMs: start - now, retryAfterMs: next - now - periodMs };
    }
    this.tat = next;
    if (next - this.persistedTat >= periodMs / 2) {
      this.persistedTat = next;
      this.ctx.storage.put("tat", next, { allowUnconfirmed: true });
    }
    return { allowed: true, remaining: Math.floor((periodMs - (next - now)) / interval + 1e-6), resetMs: next - now };
  }
}

// ---------------------------------------------------------------------------------------------
// Proxy.

function forwardableHeaders(source) {
  const headers = new Headers(source);
  const named = (source.get("connection") ?? "").split(",").map((name) => name.trim().toLowerCase());
  for (const name of [...HOP_BY_HOP, ...named]) if (name) headers.delete(name);
  return headers;
}

/**
 * The request body, refused with 413 above the limit. With a Content-Length it streams straight
 * through; without one (chunked) it is collected up to the limit first, because a stream cut
 * mid-way would reach the gateway as a complete, truncated body.
 */
async function limitedBody(request, config) {
  if (request.method !== "POST" || request.body === null) return null;
  const declared = request.headers.get("content-length");
  if (declared !== null) {
    if (Number(declared) > config.maxBodyBytes) throw bodyTooLarge(config);
    return request.body;
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.byteLength;
    if (size > config.maxBodyBytes) throw bodyTooLarge(config);
    chunks.push(chunk);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

const bodyTooLarge = (config) =>
  new HttpError(413, "invalid_request_error", "request_too_large", `request body larger than ${config.maxBodyBytes} bytes`);

async function proxy(request, url, config, { sub, requestId, extraHeaders }) {
  const body = await limitedBody(request, config);
  const headers = forwardableHeaders(request.headers);
  headers.delete("authorization");
  if (config.upstreamApiKey !== null) headers.set("authorization", `Bearer ${config.upstreamApiKey}`);
  headers.set("x-client-id", sub);
  headers.set("x-request-id", requestId);

  let upstream;
  try {
    upstream = await fetch(config.upstreamBase + url.pathname + url.search, {
      method: request.method,
      headers,
      body,
      redirect: "manual",
    });
  } catch (err) {
    console.error(`request ${requestId}: upstream fetch failed: ${err.message}`);
    throw new HttpError(502, "server_error", "upstream_unreachable", "the model gateway could not be reached");
  }
  const responseHeaders = forwardableHeaders(upstream.headers);
  responseHeaders.set("x-request-id", requestId);
  for (const [name, value] of Object.entries(extraHeaders)) responseHeaders.set(name, value);
  // The body is handed over as a stream: workerd forwards each chunk as it arrives (SSE included).
  return new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: responseHeaders });
}

async function handle(request, env, ctx, requestId) {
  const config = configFor(env);
  if (config.problems.length > 0) {
    console.error(`Worker misconfigured: ${config.problems.join("; ")}`);
    throw new HttpError(500, "server_error", "worker_misconfigured", `Worker misconfigured: ${config.problems.join("; ")}`);
  }
  const url = new URL(request.url);
  if (!url.pathname.startsWith("/v1/")) {
    throw new HttpError(404, "invalid_request_error", "not_found", `no route for ${url.pathname}; the API lives under /v1/`);
  }
  if (!ALLOWED_METHODS.includes(request.method)) {
    throw new HttpError(405, "invalid_request_error", "method_not_allowed", `method ${request.method} not allowed`, {
      allow: ALLOWED_METHODS.join(", "),
    });
  }
  const claims = await verifyToken(bearerToken(request, config), config, ctx);
  const extraHeaders = await enforceRateLimit(config, env, claims.sub);
  return proxy(request, url, config, { sub: claims.sub, requestId, extraHeaders });
}

export default {
  async fetch(request, env, ctx) {
    const incoming = request.headers.get("x-request-id");
    const requestId = incoming !== null && REQUEST_ID_PATTERN.test(incoming) ? incoming : crypto.randomUUID();
    try {
      return await handle(request, env, ctx, requestId);
    } catch (err) {
      if (err instanceof HttpError) return errorResponse(err, requestId);
      console.error(`request ${requestId}: ${err.stack ?? err}`);
      return errorResponse(new HttpError(500, "server_error", "internal_error", "internal error in the edge Worker"), requestId);
    }
  },
};
