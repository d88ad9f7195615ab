// The real-browser test: headless Debian chromium (playwright-core, never a downloaded browser)
// runs session-client.js against the real local API — `cargo lambda watch` over a real
// redis-server, as `make run` serves it — in two places:
//
//   page       a plain page on http://127.0.0.1:<port> (a CORS origin the API allows)
//   extension  an unpacked MV3 extension's service worker, token in chrome.storage.session,
//              calls made as CORS requests from chrome-extension://<id>
//
// and walks create → validate → refresh (explicit, shared, automatic) → cache put/get →
// logout-all → validate fails; signs out another device (two sessions of one user: list, revoke
// the other by its id, the other's validate fails); then a Redis outage (503, retried, typed).
// Each step prints one `[flow]` line. Run by `make test-client-browser` (which installs chromium and playwright-core);
// by hand: `node test/browser/flow.test.mjs` from clients/extension.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from './harness.mjs';

const ISSUER = 'session-client-browser-test';
const USER = 'user_browser';
const EXT_USER = 'user_extension';
const DEVICES_USER = 'user_devices';
// A well-formed session id (16 base64url characters) that names no session.
const UNKNOWN_ID = 'AAAAAAAAAAAAAAAA';
// Short sessions, so that the automatic refresh comes within seconds (10 s before expiry).
const SESSION_TIMEOUT = 20;

let redis;
let api;
let pages;
let ext;
let context;
let page;
let worker;
let keys;
let failed = false;
const wire = []; // the page's requests as they finished: { method, path, status }

function step(leg, name, value) {
  console.log(`[flow] ${leg.padEnd(9)} ${name.padEnd(40)} ${JSON.stringify(value)}`);
}

// A test that marks the run failed (logs kept) when it throws.
function check(name, options, fn) {
  test(name, options, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      failed = true;
      throw e;
    }
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const count = (method, path, status) =>
  wire.filter((w) => w.method === method && w.path === path && (status === undefined || w.status === status)).length;

// The page's requests reach us as events: wait for them, then check nothing more came.
async function expectWire(method, path, n, status) {
  for (let i = 0; i < 50 && count(method, path, status) < n; i++) await sleep(100);
  await sleep(200);
  assert.equal(count(method, path, status), n, `${method} ${path}${status ? ` -> ${status}` : ''} on the wire: ${JSON.stringify(wire.slice(-8))}`);
}

// Runs `fn(sc, arg)` in the page (or the worker) and returns attempt()'s {ok, value | code, …}.
const inPage = (fn, arg) => page.evaluate(`attempt(() => (${fn})(window.sc, ${JSON.stringify(arg ?? null)}))`);
const inWorker = (fn, arg) => worker.evaluate(`attempt(() => (${fn})(self.sc, ${JSON.stringify(arg ?? null)}))`);

before(
  async () => {
    const t0 = Date.now();
    try {
      keys = h.jwtKeys(ISSUER);
      pages = await h.startPageServer();
      ext = h.makeExtension();
      redis = await h.startRedis();
      const built = await h.buildFunctions();
      console.log(`# cargo build of the ${built.packages.length} functions: ${(built.ms / 1000).toFixed(1)} s`);
      api = await h.startWatch({
        redisUrl: redis.url,
        publicPem: keys.publicPem,
        issuer: ISSUER,
        origins: [pages.origin, ext.origin],
        sessionTimeout: SESSION_TIMEOUT,
      });
      console.log(`# API ${api.base} (cargo lambda watch, redis ${redis.url}); allowed origins ${pages.origin}, ${ext.origin}`);
      console.log(`# the ${built.packages.length} functions answered after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      context = await h.launchBrowser(ext.dir);
      page = await context.newPage();
      page.on('pageerror', (e) => console.log(`# page error: ${e.message}`));
      // (Chromium logs each 4xx/5xx answer as "Failed to load resource": expected here.)
      page.on('console', (m) => {
        if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) console.log(`# page console: ${m.text()}`);
      });
      page.on('requestfinished', async (request) => {
        const response = await request.response();
        wire.push({ method: request.method(), path: new URL(request.url()).pathname, status: response?.status() });
      });
      page.on('requestfailed', (request) => {
        wire.push({ method: request.method(), path: new URL(request.url()).pathname, status: 0 });
      });
      console.log(`# ${context.browser()?.version() ?? 'chromium'} headless, fresh profile, test extension ${ext.id}`);
    } catch (e) {
      failed = true;
      throw e;
    }
  },
  { timeout: 40 * 60_000 },
);

after(async () => {
  if (failed) h.keepLogs();
  await context?.close().catch(() => {});
  await pages?.close();
  await h.stopAll();
});

describe('page: the module in a plain page on http://127.0.0.1 (memory storage)', () => {
  const at = {};

  check('loads and configures the client', { timeout: 30_000 }, async () => {
    await page.goto(`${pages.origin}/`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 10_000 });
    const r = await page.evaluate((base) => {
      window.changes = [];
      window.sc.configure({ baseUrl: base, retryBaseMs: 200, onSessionChange: (s) => window.changes.push(s) });
      return { origin: location.origin };
    }, api.base);
    assert.equal(r.origin, pages.origin);
    step('page', 'configure', { baseUrl: api.base, origin: r.origin });
  });

  check('create: a Clerk JWT for a session token', { timeout: 60_000 }, async () => {
    const r = await inPage((sc, jwt) => sc.createSession(jwt, { rememberMe: false }), keys.sign(USER, pages.origin));
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.userId, USER);
    assert.equal(r.value.rememberMe, false);
    assert.ok(r.value.expiresIn > SESSION_TIMEOUT - 3 && r.value.expiresIn <= SESSION_TIMEOUT, JSON.stringify(r));
    at.created = r.value;
    await expectWire('POST', '/api/session/create', 1, 200);
    // The page's web storage stays empty: the token is only in the client's storage adapter.
    assert.deepEqual(await page.evaluate(() => [localStorage.length, sessionStorage.length]), [0, 0]);
    step('page', 'createSession(jwt, {rememberMe:false})', r.value);
  });

  check('validate: valid', { timeout: 30_000 }, async () => {
    const r = await inPage((sc) => sc.validate());
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.valid, true);
    assert.equal(r.value.userId, USER);
    step('page', 'validate()', r.value);
  });

  check('refresh: slides the expiry', { timeout: 30_000 }, async () => {
    await sleep(1500);
    const r = await inPage((sc) => sc.refresh());
    assert.ok(r.ok, JSON.stringify(r));
    assert.ok(r.value.expiresAt > at.created.expiresAt, `${at.created.expiresAt} -> ${r.value.expiresAt}`);
    await expectWire('POST', '/api/session/refresh', 1, 200);
    step('page', 'refresh() 1.5 s later', { from: at.created.expiresAt, to: r.value.expiresAt });
  });

  check('refresh: four concurrent callers, one request on the wire', { timeout: 30_000 }, async () => {
    const r = await inPage((sc) => Promise.all([sc.refresh(), sc.refresh(), sc.refresh(), sc.refresh()]));
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(new Set(r.value.map((v) => v.expiresAt)).size, 1);
    await expectWire('POST', '/api/session/refresh', 2, 200);
    at.lastRefresh = Date.now();
    step('page', 'Promise.all(4 × refresh())', { results: r.value.length, requests: 1, expiresAt: r.value[0].expiresAt });
  });

  check('refresh: automatic, before expiry', { timeout: 40_000 }, async () => {
    const before = await page.evaluate(() => window.changes.length);
    for (let i = 0; i < 300 && (await page.evaluate(() => window.changes.length)) === before; i++) await sleep(100);
    const waited = (Date.now() - at.lastRefresh) / 1000;
    const r = await page.evaluate(() => window.changes.at(-1));
    assert.ok(r && r.userId === USER, JSON.stringify(r));
    assert.ok(r.expiresIn > SESSION_TIMEOUT - 3, JSON.stringify(r));
    await expectWire('POST', '/api/session/refresh', 3, 200);
    // lifetime 20 s: refreshed when 10 s were left (half the lifetime, under refreshBeforeSeconds).
    assert.ok(waited > 7 && waited < 14, `waited ${waited} s`);
    step('page', 'automatic refresh (timer)', { after_s: Number(waited.toFixed(1)), left_s: Number((SESSION_TIMEOUT - waited).toFixed(1)), expiresAt: r.expiresAt });
  });

  check('cache: miss, put, get', { timeout: 30_000 }, async () => {
    const data = { theme: 'dark', recent: ['#ff0000', '#00ff00'], picks: 42 };
    const miss = await inPage((sc, user) => sc.getUserCache(user), USER);
    assert.ok(miss.ok && miss.value === undefined, JSON.stringify(miss));
    await expectWire('GET', `/api/cache/user/${USER}`, 1, 404);
    step('page', `getUserCache('${USER}') before put`, miss.value ?? 'undefined (404 cache_miss)');
    const put = await inPage((sc, [user, d]) => sc.putUserCache(user, d), [USER, data]);
    assert.ok(put.ok, JSON.stringify(put));
    assert.equal(put.value.expiresIn, 3600);
    step('page', `putUserCache('${USER}', data)`, put.value);
    const got = await inPage((sc, user) => sc.getUserCache(user), USER);
    assert.ok(got.ok, JSON.stringify(got));
    assert.deepEqual(got.value, data);
    step('page', `getUserCache('${USER}')`, got.value);
  });

  check("cache: another user's is forbidden (403, typed, not retried)", { timeout: 30_000 }, async () => {
    const r = await inPage((sc) => sc.getUserCache('user_someone_else'));
    assert.equal(r.ok, false);
    assert.equal(r.name, 'SessionError');
    assert.equal(r.code, 'forbidden');
    assert.equal(r.status, 403);
    assert.equal(r.retryable, false);
    await expectWire('GET', '/api/cache/user/user_someone_else', 1, 403);
    step('page', "getUserCache('user_someone_else')", { error: r.code, status: r.status, message: r.message, requests: 1 });
  });

  check('stats, and a second device of the same user', { timeout: 30_000 }, async () => {
    const one = await inPage((sc) => sc.stats());
    assert.ok(one.ok, JSON.stringify(one));
    assert.equal(one.value.active_sessions, 1);
    assert.equal(one.value.backend, 'redis');
    step('page', 'stats()', one.value);
    const second = await page.evaluate(
      ([base, jwt]) => window.attempt(async () => {
        window.device2 = window.sc.createClient({ baseUrl: base, storage: window.sc.memoryStorage() });
        return window.device2.createSession(jwt, { rememberMe: true });
      }),
      [api.base, keys.sign(USER, pages.origin)],
    );
    assert.ok(second.ok, JSON.stringify(second));
    const two = await inPage((sc) => sc.stats());
    assert.equal(two.value.active_sessions, 2);
    assert.equal(two.value.remember_me_sessions, 1);
    step('page', 'device2.createSession + stats()', { active_sessions: two.value.active_sessions, remember_me_sessions: two.value.remember_me_sessions });
  });

  check('logout-all ends both sessions', { timeout: 30_000 }, async () => {
    const r = await inPage((sc) => sc.logoutAll());
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value, { revoked: 2 });
    const local = await inPage((sc) => sc.getSession());
    assert.deepEqual(local, { ok: true, value: null });
    step('page', 'logoutAll()', { ...r.value, storedSession: local.value });
  });

  check('validate fails: here (no session) and on the other device (401 invalid_token)', { timeout: 30_000 }, async () => {
    const here = await inPage((sc) => sc.validate());
    assert.deepEqual(here, { ok: true, value: { valid: false, code: 'no_session' } });
    step('page', 'validate()', here.value);
    const validates = count('GET', '/api/session/validate');
    const there = await page.evaluate(() => window.attempt(() => window.device2.validate()));
    assert.deepEqual(there, { ok: true, value: { valid: false, code: 'invalid_token' } });
    await expectWire('GET', '/api/session/validate', validates + 1);
    assert.equal(wire.filter((w) => w.path === '/api/session/validate').at(-1).status, 401);
    step('page', 'device2.validate()', { ...there.value, http: 401 });
  });

  check('a forged JWT: invalid_jwt (401), not retried', { timeout: 30_000 }, async () => {
    const creates = count('POST', '/api/session/create');
    const r = await inPage((sc, jwt) => sc.createSession(jwt), keys.forge(USER, pages.origin));
    assert.equal(r.ok, false);
    assert.equal(r.code, 'invalid_jwt');
    assert.equal(r.status, 401);
    await expectWire('POST', '/api/session/create', creates + 1);
    step('page', 'createSession(forged jwt)', { error: r.code, status: r.status, requests: 1 });
  });
});

describe('page: sign out that other device (two devices of one user: list, revoke)', () => {
  const at = {};
  // Runs fn(deviceA, deviceB, arg) in the page: two clients with storages of their own.
  const onDevices = (fn, arg) =>
    page.evaluate(`attempt(() => (${fn})(window.deviceA, window.deviceB, ${JSON.stringify(arg ?? null)}))`);
  const ID = /^[A-Za-z0-9_-]{16}$/;
  const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

  check('two sessions of the same user, one per device: each lists both, exactly one current', { timeout: 60_000 }, async () => {
    const a = await page.evaluate(
      ([base, jwt]) => window.attempt(async () => {
        window.changesA = [];
        const options = { baseUrl: base, retryBaseMs: 200 };
        window.deviceA = window.sc.createClient({ ...options, storage: window.sc.memoryStorage(), onSessionChange: (s) => window.changesA.push(s) });
        window.deviceB = window.sc.createClient({ ...options, storage: window.sc.memoryStorage() });
        return window.deviceA.createSession(jwt);
      }),
      [api.base, keys.sign(DEVICES_USER, pages.origin)],
    );
    assert.ok(a.ok, JSON.stringify(a));
    // A second later, so that created_at (whole seconds) orders them.
    await sleep(1100);
    const b = await onDevices((A, B, jwt) => B.createSession(jwt, { rememberMe: true }), keys.sign(DEVICES_USER, pages.origin));
    assert.ok(b.ok, JSON.stringify(b));
    at.created = { a: a.value, b: b.value };
    step('devices', 'deviceA + deviceB.createSession', { a: a.value.expiresAt, b: b.value.expiresAt });

    const lists = await onDevices(async (A, B) => [await A.listSessions(), await B.listSessions()]);
    assert.ok(lists.ok, JSON.stringify(lists));
    const [fromA, fromB] = lists.value;
    await expectWire('GET', '/api/session/list', 2, 200);
    assert.equal(fromA.length, 2, JSON.stringify(fromA));
    for (const s of fromA) {
      assert.deepEqual(Object.keys(s).sort(), ['createdAt', 'current', 'device', 'expiresAt', 'lastRefreshedAt', 'rememberMe', 'sessionId'], JSON.stringify(s));
      assert.match(s.sessionId, ID);
      for (const t of [s.createdAt, s.lastRefreshedAt, s.expiresAt]) assert.match(t, RFC3339, JSON.stringify(s));
      assert.equal(s.lastRefreshedAt, s.createdAt, `not refreshed yet: ${JSON.stringify(s)}`);
      assert.equal(typeof s.device, 'string');
      assert.ok(s.device.length > 0, JSON.stringify(s));
    }
    assert.equal(fromA.filter((s) => s.current).length, 1, JSON.stringify(fromA));
    // Newest first: B's session, then A's own.
    assert.deepEqual(fromA.map((s) => s.current), [false, true], JSON.stringify(fromA));
    assert.ok(fromA[0].createdAt > fromA[1].createdAt, JSON.stringify(fromA));
    assert.deepEqual(fromA.map((s) => s.rememberMe), [true, false]);
    assert.deepEqual(fromA.map((s) => s.expiresAt), [at.created.b.expiresAt, at.created.a.expiresAt]);
    // From B, the same two, B's the current one.
    assert.deepEqual(fromB.map((s) => s.sessionId), fromA.map((s) => s.sessionId));
    assert.deepEqual(fromB.map((s) => s.current), [true, false]);
    at.mine = fromA[1].sessionId;
    at.mineCreatedAt = fromA[1].createdAt;
    at.other = fromA[0].sessionId;
    const ua = await page.evaluate(() => navigator.userAgent);
    step('devices', 'deviceA.listSessions()', fromA);
    step('devices', 'deviceB.listSessions() current', fromB.map((s) => s.current));
    step('devices', 'navigator.userAgent', ua);
  });

  check('with a Clerk JWT (no session stored): the same two, none current', { timeout: 30_000 }, async () => {
    const r = await page.evaluate(
      ([base, jwt]) => window.attempt(() => window.sc.createClient({ baseUrl: base, storage: window.sc.memoryStorage() }).listSessions({ clerkToken: jwt })),
      [api.base, keys.sign(DEVICES_USER, pages.origin)],
    );
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.value.map((s) => s.sessionId), [at.other, at.mine]);
    assert.deepEqual(r.value.map((s) => s.current), [false, false]);
    step('devices', 'listSessions({clerkToken})', r.value.map((s) => ({ sessionId: s.sessionId, current: s.current })));
  });

  check('a refresh moves lastRefreshedAt (and expiresAt), not createdAt', { timeout: 30_000 }, async () => {
    // deviceA's session was made more than a second ago (created_at has whole seconds).
    const r = await onDevices(async (A) => {
      const refreshed = await A.refresh();
      return { refreshed, mine: (await A.listSessions()).find((s) => s.current) };
    });
    assert.ok(r.ok, JSON.stringify(r));
    const { refreshed, mine } = r.value;
    assert.equal(mine.sessionId, at.mine);
    assert.equal(mine.createdAt, at.mineCreatedAt);
    assert.ok(mine.lastRefreshedAt > mine.createdAt, JSON.stringify(mine));
    assert.equal(mine.expiresAt, refreshed.expiresAt);
    step('devices', 'deviceA.refresh() + listSessions()', { createdAt: mine.createdAt, lastRefreshedAt: mine.lastRefreshedAt, expiresAt: mine.expiresAt });
  });

  check('deviceA signs out deviceB by its sessionId; B is refused, A lists one session', { timeout: 30_000 }, async () => {
    const changes = await page.evaluate(() => window.changesA.length);
    const r = await onDevices((A, B, id) => A.revokeSession(id), at.other);
    assert.deepEqual(r, { ok: true, value: { revoked: true, current: false } });
    await expectWire('POST', '/api/session/revoke', 1, 200);
    const stillA = await onDevices((A) => A.getSession());
    assert.equal(stillA.value?.userId, DEVICES_USER, 'A keeps its session');
    assert.equal(await page.evaluate(() => window.changesA.length), changes, 'no session change on A');
    step('devices', 'deviceA.revokeSession(<B\'s sessionId>)', r.value);

    const validates = count('GET', '/api/session/validate');
    const there = await onDevices((A, B) => B.validate());
    assert.deepEqual(there, { ok: true, value: { valid: false, code: 'invalid_token' } });
    await expectWire('GET', '/api/session/validate', validates + 1);
    assert.equal(wire.filter((w) => w.method === 'GET' && w.path === '/api/session/validate').at(-1).status, 401);
    assert.deepEqual(await onDevices((A, B) => B.getSession()), { ok: true, value: null });
    step('devices', 'deviceB.validate()', { ...there.value, http: 401 });

    const list = await onDevices((A) => A.listSessions());
    assert.ok(list.ok, JSON.stringify(list));
    assert.equal(list.value.length, 1, JSON.stringify(list.value));
    assert.equal(list.value[0].sessionId, at.mine);
    assert.equal(list.value[0].current, true);
    assert.equal((await onDevices((A) => A.validate())).value?.valid, true);
    step('devices', 'deviceA.listSessions()', list.value.map((s) => ({ sessionId: s.sessionId, current: s.current })));
  });

  check('revoking an unknown id: session_not_found (404, typed, not retried); a malformed one: invalid_request', { timeout: 30_000 }, async () => {
    const revokes = count('POST', '/api/session/revoke');
    const notFound = count('POST', '/api/session/revoke', 404);
    for (const [id, what] of [[UNKNOWN_ID, 'an unknown id'], [at.other, 'the id just revoked']]) {
      const r = await onDevices((A, B, sid) => A.revokeSession(sid), id);
      assert.equal(r.ok, false, JSON.stringify(r));
      assert.equal(r.name, 'SessionError');
      assert.equal(r.code, 'session_not_found');
      assert.equal(r.status, 404);
      assert.equal(r.retryable, false);
      step('devices', `revokeSession(${what})`, { error: r.code, status: r.status, message: r.message });
    }
    await expectWire('POST', '/api/session/revoke', notFound + 2, 404);
    assert.equal(count('POST', '/api/session/revoke'), revokes + 2, 'not retried');
    // 16 characters but not base64url, and too short.
    for (const id of ['not/a/session/id', 'AAAA']) {
      const malformed = await onDevices((A, B, sid) => A.revokeSession(sid), id);
      assert.equal(malformed.code, 'invalid_request', JSON.stringify(malformed));
      assert.equal(malformed.status, 400);
      step('devices', `revokeSession('${id}')`, { error: malformed.code, status: malformed.status, message: malformed.message });
    }
    assert.equal((await onDevices((A) => A.validate())).value?.valid, true, 'A keeps its session');
  });

  check('revoking its own session is a logout: current, dropped here, the token refused', { timeout: 30_000 }, async () => {
    const token = await onDevices((A) => A.getToken());
    const r = await onDevices((A, B, id) => A.revokeSession(id), at.mine);
    assert.deepEqual(r, { ok: true, value: { revoked: true, current: true } });
    assert.deepEqual(await onDevices((A) => A.getSession()), { ok: true, value: null });
    assert.equal(await page.evaluate(() => window.changesA.at(-1)), null, 'onSessionChange(null)');
    // The old token, put back in a client's storage: the API itself refuses it now.
    const old = await page.evaluate(
      ([base, t]) => window.attempt(async () => {
        const storage = window.sc.memoryStorage();
        await storage.set('cssPickerSession', { token: t, userId: 'x', expiresAtMs: Date.now() + 60_000, lifetimeMs: 60_000 });
        return window.sc.createClient({ baseUrl: base, storage, autoRefresh: false }).validate();
      }),
      [api.base, token.value],
    );
    assert.deepEqual(old.value, { valid: false, code: 'invalid_token' });
    const left = await page.evaluate(
      ([base, jwt]) => window.attempt(() => window.sc.createClient({ baseUrl: base, storage: window.sc.memoryStorage() }).listSessions({ clerkToken: jwt })),
      [api.base, keys.sign(DEVICES_USER, pages.origin)],
    );
    assert.deepEqual(left, { ok: true, value: [] });
    step('devices', 'deviceA.revokeSession(<its own sessionId>)', { ...r.value, storedSession: null, oldToken: old.value.code, left: 0 });
  });
});

describe('extension: the module in an MV3 service worker (chrome.storage.session)', () => {
  check('the worker runs, with no web storage at all', { timeout: 30_000 }, async () => {
    worker = context.serviceWorkers().find((w) => w.url().startsWith(ext.origin));
    worker ??= await context.waitForEvent('serviceworker', { timeout: 15_000, predicate: (w) => w.url().startsWith(ext.origin) });
    const env = await worker.evaluate(() => ({
      localStorage: typeof localStorage,
      storageSession: typeof chrome.storage.session,
      sc: typeof self.sc?.createSession,
    }));
    assert.deepEqual(env, { localStorage: 'undefined', storageSession: 'object', sc: 'function' });
    step('extension', 'service worker', { url: worker.url(), ...env });
  });

  check('create: token stored in chrome.storage.session', { timeout: 60_000 }, async () => {
    await worker.evaluate((base) => self.sc.configure({ baseUrl: base, storage: 'session' }), api.base);
    const r = await inWorker((sc, jwt) => sc.createSession(jwt, { rememberMe: true }), keys.sign(EXT_USER, ext.origin));
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.userId, EXT_USER);
    assert.equal(r.value.rememberMe, true);
    assert.ok(r.value.expiresIn > 2_591_990, JSON.stringify(r));
    const stored = await worker.evaluate(() => self.stored());
    const prefix = `${Buffer.from(EXT_USER).toString('base64url')}.`;
    assert.ok(stored?.token?.startsWith(prefix), JSON.stringify(stored && { ...stored, token: '…' }));
    await worker.evaluate(() => {
      self.saved = null;
      return self.stored().then((s) => {
        self.saved = s;
      });
    });
    step('extension', 'createSession(jwt, {rememberMe:true})', r.value);
    step('extension', 'chrome.storage.session', { cssPickerSession: { token: `${prefix}<secret>`, userId: stored.userId, expiresAt: stored.expiresAt } });
  });

  check('validate, refresh, cache put/get', { timeout: 30_000 }, async () => {
    const v = await inWorker((sc) => sc.validate());
    assert.equal(v.value?.valid, true, JSON.stringify(v));
    step('extension', 'validate()', v.value);
    const r = await inWorker((sc) => sc.refresh());
    assert.ok(r.ok, JSON.stringify(r));
    step('extension', 'refresh()', r.value);
    const data = { palette: ['#123456'], lastPage: 'https://example.test/' };
    const put = await inWorker((sc, d) => sc.putUserCache(undefined, d), data);
    assert.ok(put.ok, JSON.stringify(put));
    const got = await inWorker((sc) => sc.getUserCache());
    assert.deepEqual(got.value, data);
    step('extension', 'putUserCache + getUserCache()', got.value);
  });

  check('listSessions: its one session, current (CORS from the extension)', { timeout: 30_000 }, async () => {
    const r = await inWorker((sc) => sc.listSessions());
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.value.length, 1, JSON.stringify(r.value));
    assert.equal(r.value[0].current, true);
    assert.equal(r.value[0].rememberMe, true);
    assert.match(r.value[0].sessionId, /^[A-Za-z0-9_-]{16}$/);
    step('extension', 'listSessions()', r.value);
  });

  check('logout-all, then validate fails', { timeout: 30_000 }, async () => {
    const r = await inWorker((sc) => sc.logoutAll());
    assert.deepEqual(r, { ok: true, value: { revoked: 1 } });
    assert.equal(await worker.evaluate(() => self.stored()), null);
    step('extension', 'logoutAll()', { ...r.value, 'chrome.storage.session': null });
    const here = await inWorker((sc) => sc.validate());
    assert.deepEqual(here.value, { valid: false, code: 'no_session' });
    step('extension', 'validate()', here.value);
    // The old token, put back in a client's storage: the API itself refuses it now.
    const old = await worker.evaluate(
      (base) => self.attempt(async () => {
        const storage = self.sc.memoryStorage();
        await storage.set('cssPickerSession', self.saved);
        return self.sc.createClient({ baseUrl: base, storage }).validate();
      }),
      api.base,
    );
    assert.deepEqual(old.value, { valid: false, code: 'invalid_token' });
    step('extension', 'validate() with the revoked token', old.value);
  });
});

describe('outage: redis-server killed', () => {
  check('503 store_unavailable: retried with backoff, then a typed, retryable error', { timeout: 60_000 }, async () => {
    const created = await inPage((sc, jwt) => sc.createSession(jwt), keys.sign(USER, pages.origin));
    assert.ok(created.ok, JSON.stringify(created));
    process.kill(-redis.entry.pid, 'SIGKILL');
    for (let i = 0; i < 50 && !redis.entry.exited; i++) await sleep(100);
    assert.ok(redis.entry.exited, 'redis-server is gone');
    const statsBefore = count('GET', '/api/session/stats');
    const t0 = Date.now();
    const s = await inPage((sc) => sc.stats());
    const ms = Date.now() - t0;
    assert.equal(s.ok, false, JSON.stringify(s));
    assert.equal(s.code, 'store_unavailable');
    assert.equal(s.status, 503);
    assert.equal(s.retryable, true);
    // The default client: 3 retries after the first attempt.
    await expectWire('GET', '/api/session/stats', statsBefore + 4);
    assert.equal(count('GET', '/api/session/stats', 503), 4);
    step('outage', 'stats() with redis-server killed', { error: s.code, status: s.status, retryable: s.retryable, requests: 4, ms });
  });
});
