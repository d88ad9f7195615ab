// Timing: refresh scheduling and retry backoff, with a fake fetch and mocked setTimeout/Date.

import { test, describe, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { SessionClient, SessionError, memoryStorage } from '../../session-client.js';
import { fakeFetch, json, storeUnavailable, advance } from './helpers.mjs';

const T0 = Date.UTC(2026, 0, 1);
const BASE = 'http://api.test';
const iso = (ms) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

beforeEach(() => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: T0 });
});
afterEach(() => {
  mock.timers.reset();
});

/**
 * A fake service: sessions of `lifetime` seconds; refresh slides to now + lifetime, but never past
 * `cap` (absolute ms); `refreshAnswers` queues answers for the next refreshes.
 */
function service({ lifetime = 3600, cap = Infinity, refreshAnswers = [] } = {}) {
  let expiresAtMs;
  const session = () => ({
    success: true,
    user_id: 'user_t',
    expires_at: iso(expiresAtMs),
    expires_in: Math.round((expiresAtMs - Date.now()) / 1000),
    remember_me: lifetime > 3600,
  });
  return fakeFetch((method, path) => {
    if (path === '/api/session/create') {
      expiresAtMs = Math.min(Date.now() + lifetime * 1000, cap);
      return json(200, { ...session(), session_token: 'dXNlcl90.secret' });
    }
    if (path === '/api/session/refresh') {
      const queued = refreshAnswers.shift();
      if (queued) return typeof queued === 'function' ? queued() : queued;
      expiresAtMs = Math.min(Date.now() + lifetime * 1000, cap);
      return json(200, session());
    }
    if (path === '/api/session/stats') return json(200, { success: true, stats: { active_sessions: 1 } });
    if (path === '/api/session/validate') return json(200, { ...session(), valid: true });
    throw new Error(`unexpected ${method} ${path}`);
  });
}

const client = (fetch, extra = {}) => new SessionClient({ baseUrl: BASE, storage: memoryStorage(), fetch, ...extra });

describe('refresh scheduling', () => {
  test('refreshes refreshBeforeSeconds before expiry, and again after each refresh', async () => {
    const fetch = service({ lifetime: 3600 });
    const c = client(fetch, { refreshBeforeSeconds: 300 });
    await c.createSession('jwt');
    await advance(mock.timers, 3299_000, 60_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 0, 'not before expiry - 300 s');
    await advance(mock.timers, 1_000, 100);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    assert.equal(fetch.calls.at(-1).at, T0 + 3300_000);
    // The new expiry is an hour from that refresh: the next one comes 3300 s later.
    await advance(mock.timers, 3300_000, 60_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 2);
    assert.equal(fetch.calls.at(-1).at, T0 + 6600_000);
    c.dispose();
  });

  test('a short session refreshes at half its lifetime at the latest', async () => {
    const fetch = service({ lifetime: 60 });
    const c = client(fetch, { refreshBeforeSeconds: 300 });
    await c.createSession('jwt');
    await advance(mock.timers, 29_900, 100);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 0);
    await advance(mock.timers, 200, 100);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    c.dispose();
  });

  test('a 30-day remember-me session: past the 24.8-day timer limit, refreshed on time', async () => {
    const fetch = service({ lifetime: 2_592_000 });
    // Wrap the mocked setTimeout: a real one fires at once for a delay past 2^31 - 1 ms.
    const mocked = globalThis.setTimeout;
    const delays = [];
    globalThis.setTimeout = (fn, ms, ...rest) => {
      delays.push(ms);
      return mocked(fn, ms, ...rest);
    };
    const c = client(fetch, { refreshBeforeSeconds: 300 });
    try {
      await c.createSession('jwt', { rememberMe: true });
    } finally {
      globalThis.setTimeout = mocked;
    }
    assert.deepEqual(delays.filter((d) => d > 2 ** 31 - 1), []);
    assert.ok(delays.includes(2 ** 31 - 1), `the refresh timer is capped: ${delays}`);
    const due = 2_592_000_000 - 300_000;
    await advance(mock.timers, due - 1000, 3600_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 0);
    await advance(mock.timers, 2000, 100);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    assert.ok(Math.abs(fetch.calls.at(-1).at - (T0 + due)) <= 100);
    c.dispose();
  });

  test('at the absolute cap (the expiry stops moving) it does not refresh in a loop', async () => {
    const fetch = service({ lifetime: 3600, cap: T0 + 3600_000 });
    const c = client(fetch, { refreshBeforeSeconds: 300 });
    await c.createSession('jwt');
    await advance(mock.timers, 3300_000, 60_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    await advance(mock.timers, 290_000, 1000);
    await c.stats();
    await c.stats();
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1, 'one refresh found the cap; no more');
    assert.equal(fetch.count('GET', '/api/session/stats'), 2);
    // An explicit refresh still asks.
    await c.refresh();
    assert.equal(fetch.count('POST', '/api/session/refresh'), 2);
    c.dispose();
  });

  test('a call made while the session is due refreshes first; concurrent calls share that refresh', async () => {
    const fetch = service({ lifetime: 3600 });
    // No timer: only the lazy path (a service worker that slept through its timer).
    const c = client(fetch, { refreshBeforeSeconds: 300, autoRefresh: true });
    await c.createSession('jwt');
    c.dispose(); // stops the timer, keeps the client
    mock.timers.tick(3400_000);
    await Promise.all([c.stats(), c.stats(), c.stats()]);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    assert.deepEqual(
      fetch.calls.slice(1).map((x) => x.path),
      ['/api/session/refresh', '/api/session/stats', '/api/session/stats', '/api/session/stats'],
    );
  });

  test('autoRefresh: false never refreshes by itself', async () => {
    const fetch = service({ lifetime: 3600 });
    const c = client(fetch, { autoRefresh: false });
    await c.createSession('jwt');
    await advance(mock.timers, 3500_000, 100_000);
    await c.stats();
    assert.equal(fetch.count('POST', '/api/session/refresh'), 0);
  });

  test('a failed timer refresh is reported to onError and tried again before expiry', async () => {
    const errors = [];
    const fetch = service({ lifetime: 3600, refreshAnswers: [storeUnavailable(), storeUnavailable()] });
    const c = client(fetch, { refreshBeforeSeconds: 300, retries: 1, retryBaseMs: 100, refreshRetryMs: 30_000, onError: (e) => errors.push(e) });
    await c.createSession('jwt');
    await advance(mock.timers, 3300_000 + 1000, 60_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 2, 'first attempt and one retry');
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof SessionError);
    assert.equal(errors[0].code, 'store_unavailable');
    await advance(mock.timers, 30_000, 1000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 3, 'tried again 30 s later, and it worked');
    assert.ok((await c.getSession()).expiresIn > 3500);
    c.dispose();
  });

  test('a timer refresh refused (invalid_token) forgets the session and stops', async () => {
    const changes = [];
    const fetch = service({
      lifetime: 3600,
      refreshAnswers: [json(401, { success: false, error: { code: 'invalid_token', message: 'revoked' } })],
    });
    const c = client(fetch, { refreshBeforeSeconds: 300, onError: () => {}, onSessionChange: (s) => changes.push(s) });
    await c.createSession('jwt');
    await advance(mock.timers, 3600_000 * 2, 60_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    assert.equal(await c.getSession(), null);
    assert.equal(changes.at(-1), null);
  });

  test('getSession() re-arms the timer for a session found in storage (a worker waking up)', async () => {
    const fetch = service({ lifetime: 3600 });
    const storage = memoryStorage();
    const first = client(fetch, { storage });
    await first.createSession('jwt');
    first.dispose();
    await advance(mock.timers, 1000_000, 100_000);
    const woken = client(fetch, { storage });
    assert.equal((await woken.getSession()).userId, 'user_t');
    await advance(mock.timers, 2300_000, 60_000);
    assert.equal(fetch.count('POST', '/api/session/refresh'), 1);
    woken.dispose();
  });
});

describe('retry backoff', () => {
  test('exponential with jitter in [ceiling/2, ceiling], capped at retryMaxMs; 4 retries then the error', async () => {
    const fetch = fakeFetch(() => storeUnavailable());
    const c = client(fetch, { retries: 4, retryBaseMs: 1000, retryMaxMs: 3000, random: () => 1 });
    const outcome = c.createSession('jwt').catch((e) => e);
    await advance(mock.timers, 20_000, 50);
    const e = await outcome;
    assert.ok(e instanceof SessionError);
    assert.equal(e.code, 'store_unavailable');
    const at = fetch.calls.map((x) => x.at - T0);
    // random() = 1: the full ceiling each time: 1000, 2000, then capped at 3000.
    assert.deepEqual(at, [0, 1000, 3000, 6000, 9000]);
  });

  test('jitter: random() = 0 waits half the ceiling', async () => {
    const fetch = fakeFetch(() => storeUnavailable());
    const c = client(fetch, { retries: 3, retryBaseMs: 1000, retryMaxMs: 3000, random: () => 0 });
    const outcome = c.createSession('jwt').catch((e) => e);
    await advance(mock.timers, 10_000, 50);
    await outcome;
    assert.deepEqual(
      fetch.calls.map((x) => x.at - T0),
      [0, 500, 1500, 3000],
    );
  });

  test('Retry-After is honoured, capped at retryMaxMs', async () => {
    let n = 0;
    const fetch = fakeFetch(() => {
      n++;
      if (n === 1) return json(503, { success: false, error: { code: 'store_unavailable', message: '' } }, { 'retry-after': '2' });
      if (n === 2) return json(503, { message: 'Service Unavailable' }, { 'retry-after': '120' });
      return json(200, { success: true, stats: { active_sessions: 0 } });
    });
    const c = client(fetch, { retries: 3, retryBaseMs: 100, retryMaxMs: 5000 });
    const outcome = c.stats({ clerkToken: 'jwt' });
    await advance(mock.timers, 10_000, 50);
    assert.deepEqual(await outcome, { active_sessions: 0 });
    assert.deepEqual(fetch.calls.map((x) => x.at - T0), [0, 2000, 7000]);
  });

  test('network errors are retried with the same backoff', async () => {
    let n = 0;
    const fetch = fakeFetch(() => {
      if (++n < 3) throw new TypeError('fetch failed');
      return json(200, { success: true, stats: { active_sessions: 2 } });
    });
    const c = client(fetch, { retries: 3, retryBaseMs: 400, random: () => 1 });
    const outcome = c.stats({ clerkToken: 'jwt' });
    await advance(mock.timers, 5000, 50);
    assert.equal((await outcome).active_sessions, 2);
    assert.deepEqual(fetch.calls.map((x) => x.at - T0), [0, 400, 1200]);
  });

  test('a hung request times out after timeoutMs (aborted) and is retried', async () => {
    const signals = [];
    let n = 0;
    const fetch = fakeFetch((method, path, init) => {
      signals.push(init.signal);
      if (++n === 1) {
        return new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
      }
      return json(200, { success: true, stats: { active_sessions: 1 } });
    });
    const c = client(fetch, { timeoutMs: 5000, retries: 1, retryBaseMs: 100, random: () => 1 });
    const outcome = c.stats({ clerkToken: 'jwt' });
    await advance(mock.timers, 4990, 10);
    assert.equal(fetch.calls.length, 1);
    await advance(mock.timers, 200, 10);
    assert.equal((await outcome).active_sessions, 1);
    assert.equal(signals[0].aborted, true);
    assert.deepEqual(fetch.calls.map((x) => x.at - T0), [0, 5100]);
  });

  test('a timeout past the retries is a typed timeout error', async () => {
    const fetch = fakeFetch(
      (m, p, init) => new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason))),
    );
    const c = client(fetch, { timeoutMs: 1000, retries: 0 });
    const stats = c.stats({ clerkToken: 'jwt' }).catch((e) => e);
    await advance(mock.timers, 1100, 50);
    const e = await stats;
    assert.equal(e.code, 'timeout');
    assert.equal(e.retryable, true);
    assert.equal(e.status, 0);
  });

  test('4xx answers are never retried, whatever the retries setting', async () => {
    for (const status of [400, 401, 403, 404, 405, 413, 429]) {
      const fetch = fakeFetch(() => json(status, { success: false, error: { code: `c${status}`, message: '' } }));
      const c = client(fetch, { retries: 5 });
      const outcome = c.stats({ clerkToken: 'jwt' }).catch((e) => e);
      await advance(mock.timers, 30_000, 1000);
      const e = await outcome;
      assert.equal(e.status, status);
      assert.equal(e.retryable, false);
      assert.equal(fetch.calls.length, 1, `${status} retried`);
    }
  });

  test('the retries of a refresh are shared by its concurrent callers', async () => {
    const fetch = service({ lifetime: 3600, refreshAnswers: [storeUnavailable()] });
    const c = client(fetch, { retries: 2, retryBaseMs: 200, random: () => 1 });
    await c.createSession('jwt');
    const all = Promise.all([c.refresh(), c.refresh(), c.refresh()]);
    await advance(mock.timers, 1000, 10);
    await all;
    assert.equal(fetch.count('POST', '/api/session/refresh'), 2);
    c.dispose();
  });
});
