// The baseline for the benchmark: a Worker that only forwards to UPSTREAM_URL, no JWT, no limit.
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    return fetch(env.UPSTREAM_URL + url.pathname + url.search, request);
  },
};
