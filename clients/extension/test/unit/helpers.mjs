// Shared test helpers: a chrome.storage stand-in, and a fake fetch for the timing tests.

/** A `chrome` with storage.session and storage.local, promise-style like MV3's. */
export function fakeChrome() {
  const areas = { session: new Map(), local: new Map() };
  const area = (items) => ({
    async get(key) {
      return items.has(key) ? { [key]: structuredClone(items.get(key)) } : {};
    },
    async set(obj) {
      for (const [k, v] of Object.entries(obj)) items.set(k, structuredClone(v));
    },
    async remove(key) {
      items.delete(key);
    },
  });
  return { storage: { session: area(areas.session), local: area(areas.local) }, areas };
}

/** A JSON Response like the service's. */
export function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

export const storeUnavailable = () =>
  json(503, { success: false, error: { code: 'store_unavailable', message: 'the session store did not answer' } });

/**
 * A fetch that answers from `handler(method, path, init)` (a Response, a promise of one, or a
 * thrown error), logging every call with the (mocked) time it was made at.
 */
export function fakeFetch(handler) {
  const calls = [];
  const fetch = async (url, init = {}) => {
    const path = new URL(url).pathname;
    calls.push({ method: init.method ?? 'GET', path, at: Date.now(), headers: init.headers ?? {} });
    return handler(init.method ?? 'GET', path, init);
  };
  fetch.calls = calls;
  fetch.count = (method, path) => calls.filter((c) => c.method === method && c.path === path).length;
  return fetch;
}

/** Lets pending promise callbacks run (setImmediate is not mocked by the tests). */
export async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Advances mocked time by `ms` in steps, letting promises settle between them. */
export async function advance(mockTimers, ms, step = 10) {
  await settle();
  for (let done = 0; done < ms; ) {
    const d = Math.min(step, ms - done);
    mockTimers.tick(d);
    done += d;
    await settle(3);
  }
  await settle();
}
