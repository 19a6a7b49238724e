// make bench: latency of files/worker.js (JWT verify + rate limit + proxy) against a pass-through
// Worker, both in workerd (Miniflare) in front of the same local upstream, measured in the same
// run with requests interleaved so machine noise hits both alike. Prints one JSON line per mode.
// Goal (issue 5): JWT + limit cost <= 1.2x the pass-through's latency.
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { authBindings, bearer, mintHs, startUpstream, startWorker } from "../test/helpers.js";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = 200;
const GOAL = 1.2;
const PASSTHROUGH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "passthrough.js");

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(base, headers) {
  const url = new URL(`${base}/v1/models`);
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    http
      .get({ host: url.hostname, port: url.port, path: url.pathname, headers, agent }, (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode !== 200) reject(new Error(`${base}: HTTP ${res.statusCode}`));
          else resolve(Number(process.hrtime.bigint() - started) / 1e6);
        });
      })
      .on("error", reject);
  });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

async function compare(mode, upstream, token) {
  const extra = mode === "binding" ? { RATE_LIMIT_MODE: "binding" } : { RATE_LIMIT_MODE: mode };
  // A limit no benchmark reaches: we measure the limiter's cost, not its refusals.
  const limits = { RATE_LIMIT_REQUESTS: String(10 * (REQUESTS + WARMUP)), RATE_LIMIT_PERIOD_S: "60" };
  const edge = await startWorker({
    bindings: authBindings(upstream.url, { ...extra, ...limits }),
    durableObjects: mode === "do",
    rateLimit: mode === "binding" ? { limit: 10 * (REQUESTS + WARMUP), period: 60 } : null,
  });
  const baseline = await startWorker({ bindings: { UPSTREAM_URL: upstream.url }, scriptPath: PASSTHROUGH });
  try {
    const headers = bearer(token);
    for (let i = 0; i < WARMUP; i++) {
      await get(edge.url, headers);
      await get(baseline.url, headers);
    }
    const times = { edge: [], baseline: [] };
    for (let i = 0; i < REQUESTS; i++) {
      // Alternate which goes first, so neither always meets a warmer cache.
      const order = i % 2 ? ["edge", "baseline"] : ["baseline", "edge"];
      for (const name of order) times[name].push(await get(name === "edge" ? edge.url : baseline.url, headers));
    }
    const stats = Object.fromEntries(
      Object.entries(times).map(([name, values]) => {
        const sorted = values.sort((a, b) => a - b);
        return [name, { p50_ms: +quantile(sorted, 0.5).toFixed(3), p90_ms: +quantile(sorted, 0.9).toFixed(3) }];
      }),
    );
    const ratio = stats.edge.p50_ms / stats.baseline.p50_ms;
    return {
      bench: "worker",
      mode: `jwt-hs256+limit-${mode}`,
      requests: REQUESTS,
      edge: stats.edge,
      passthrough: stats.baseline,
      ratio_p50: +ratio.toFixed(3),
      ratio_p90: +(stats.edge.p90_ms / stats.baseline.p90_ms).toFixed(3),
      goal: GOAL,
      meets_goal: ratio <= GOAL,
    };
  } finally {
    await edge.mf.dispose();
    await baseline.mf.dispose();
  }
}

const upstream = await startUpstream();
try {
  const token = await mintHs({ claims: { exp: Math.floor(Date.now() / 1000) + 3600 } });
  for (const mode of (process.env.BENCH_MODES ?? "off,binding,do").split(",")) console.log(JSON.stringify(await compare(mode, upstream, token)));
} finally {
  agent.destroy();
  await upstream.close();
}
