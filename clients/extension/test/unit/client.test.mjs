// The client over real HTTP (Node's fetch) against test/unit/stub-service.mjs.

import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  SessionClient,
  SessionError,
  ErrorCode,
  chromeStorage,
  memoryStorage,
  configure,
  createSession,
  validate,
  refresh,
  logout,
  logoutAll,
  stats,
  listSessions,
  revokeSession,
  getUserCache,
  putUserCache,
  getSession,
} from '../../session-client.js';
import { startStub, sessionIdOf } from './stub-service.mjs';
import { fakeChrome } from './helpers.mjs';

let stub;
before(async () => {
  stub = await startStub();
});
after(async () => {
  await stub.close();
});
beforeEach(() => {
  stub.requests.length = 0;
});

// Fast retries: these tests count requests; the timing of backoff is timing.test.mjs's.
const client = (extra = {}) =>
  new SessionClient({ baseUrl: stub.url, storage: memoryStorage(), retryBaseMs: 1, retryMaxMs: 2, ...extra });

async function rejectsWith(promise, code, status) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof SessionError, `a SessionError, not ${e}`);
    assert.equal(e.code, code);
    if (status !== undefined) assert.equal(e.status, status);
    return true;
  });
}

describe('construction', () => {
  test('baseUrl must be an http(s) URL; a trailing slash is dropped', () => {
    assert.throws(() => new SessionClient({}), TypeError);
    assert.throws(() => new SessionClient({ baseUrl: 'ftp://x' }), TypeError);
    assert.throws(() => new SessionClient({ baseUrl: '127.0.0.1:9000' }), TypeError);
    assert.equal(new SessionClient({ baseUrl: 'http://127.0.0.1:9000/', storage: 'memory' }).baseUrl, 'http://127.0.0.1:9000');
  });

  test('bad numeric options and bad storage are refused', () => {
    assert.throws(() => client({ retries: -1 }), TypeError);
    assert.throws(() => client({ timeoutMs: 'soon' }), TypeError);
    assert.throws(() => client({ storage: {} }), TypeError);
    assert.throws(() => client({ storage: 'cookies' }), TypeError);
  });

  test('storage "session"/"local" need chrome.storage; without an extension context they say so', () => {
    assert.equal(globalThis.chrome, undefined);
    assert.throws(() => client({ storage: 'session' }), /chrome\.storage\.session is not available/);
    assert.throws(() => client({ storage: 'local' }), /chrome\.storage\.local is not available/);
    assert.throws(() => chromeStorage('sync', fakeChrome()), TypeError);
  });

  test('default storage: chrome.storage.session when present', async () => {
    const chrome = fakeChrome();
    globalThis.chrome = chrome;
    try {
      const c = new SessionClient({ baseUrl: stub.url });
      await c.createSession('jwt:user_default_storage');
      assert.ok(chrome.areas.session.get('cssPickerSession').token);
      assert.equal(chrome.areas.local.size, 0);
      c.dispose();
    } finally {
      delete globalThis.chrome;
    }
  });
});

describe('createSession', () => {
  test('sends the Clerk JWT as a Bearer and remember_me as JSON; stores the token', async () => {
    const chrome = fakeChrome();
    const changes = [];
    const c = client({ storage: chromeStorage('local', chrome), onSessionChange: (s) => changes.push(s) });
    const info = await c.createSession('jwt:user_alice', { rememberMe: true });
    assert.equal(info.userId, 'user_alice');
    assert.equal(info.rememberMe, true);
    assert.ok(Math.abs(info.expiresIn - 2_592_000) <= 1, `expiresIn ${info.expiresIn}`);
    assert.match(info.expiresAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.equal('token' in info, false, 'the token is not handed around');

    const [req] = stub.requests;
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/api/session/create');
    assert.equal(req.headers.authorization, 'Bearer jwt:user_alice');
    assert.equal(req.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(req.body), { remember_me: true });

    const stored = chrome.areas.local.get('cssPickerSession');
    assert.ok(stub.sessions.has(stored.token));
    assert.equal(await c.getToken(), stored.token);
    assert.deepEqual(changes.map((s) => s?.userId), ['user_alice']);
    c.dispose();
  });

  test('remember_me defaults to false; bad arguments fail before any request', async () => {
    const c = client();
    await c.createSession('jwt:user_short');
    assert.deepEqual(JSON.parse(stub.requests[0].body), { remember_me: false });
    await assert.rejects(c.createSession(''), TypeError);
    await assert.rejects(c.createSession('jwt:x', { rememberMe: 'yes' }), TypeError);
    assert.equal(stub.requests.length, 1);
    c.dispose();
  });

  test('a forged JWT is invalid_jwt (401), not retried, nothing stored', async () => {
    const c = client();
    await rejectsWith(c.createSession('forged'), ErrorCode.INVALID_JWT, 401);
    assert.equal(stub.count('POST', '/api/session/create'), 1);
    assert.equal(await c.getSession(), null);
  });
});

describe('validate', () => {
  test('valid session: {valid: true, userId, expiresAt, expiresIn}', async () => {
    const c = client();
    const created = await c.createSession('jwt:user_v');
    const token = await c.getToken();
    const v = await c.validate();
    assert.deepEqual({ ...v, expiresIn: undefined }, { valid: true, ...created, expiresIn: undefined });
    const req = stub.requests.find((r) => r.path === '/api/session/validate');
    assert.equal(req.method, 'GET');
    assert.equal(req.headers['x-session-token'], token);
    c.dispose();
  });

  test('no session: {valid: false, code: no_session}, no request', async () => {
    const c = client();
    assert.deepEqual(await c.validate(), { valid: false, code: 'no_session' });
    assert.equal(stub.requests.length, 0);
  });

  test('a revoked session: {valid: false, code: invalid_token}, and the token is forgotten', async () => {
    const changes = [];
    const c = client({ onSessionChange: (s) => changes.push(s) });
    await c.createSession('jwt:user_revoked');
    stub.sessions.delete(await c.getToken());
    assert.deepEqual(await c.validate(), { valid: false, code: 'invalid_token' });
    assert.equal(await c.getToken(), null);
    assert.equal(changes.at(-1), null);
    assert.equal(stub.count('GET', '/api/session/validate'), 1, 'a 401 is not retried');
  });
});

describe('refresh', () => {
  test('slides the expiry and stores it', async () => {
    const c = client();
    await c.createSession('jwt:user_r');
    const token = await c.getToken();
    stub.sessions.get(token).expiresAtMs -= 1000_000;
    const before = await c.validate();
    const after = await c.refresh();
    assert.ok(after.expiresIn > before.expiresIn + 900, `${before.expiresIn} -> ${after.expiresIn}`);
    assert.equal((await c.getSession()).expiresAt, after.expiresAt);
    c.dispose();
  });

  test('concurrent callers share one in-flight refresh', async () => {
    const c = client();
    await c.createSession('jwt:user_concurrent');
    const results = await Promise.all([c.refresh(), c.refresh(), c.refresh(), c.refresh(), c.refresh()]);
    assert.equal(stub.count('POST', '/api/session/refresh'), 1);
    for (const r of results) assert.deepEqual(r, results[0]);
    // Once it settled, the next call makes a new request.
    await c.refresh();
    assert.equal(stub.count('POST', '/api/session/refresh'), 2);
    c.dispose();
  });

  test('concurrent callers share its failure too; a refused token is forgotten', async () => {
    const c = client();
    await c.createSession('jwt:user_refused');
    stub.sessions.clear();
    const outcomes = await Promise.allSettled([c.refresh(), c.refresh(), c.refresh()]);
    for (const o of outcomes) {
      assert.equal(o.status, 'rejected');
      assert.equal(o.reason.code, 'invalid_token');
      assert.equal(o.reason.isAuthError, true);
    }
    assert.equal(stub.count('POST', '/api/session/refresh'), 1);
    assert.equal(await c.getToken(), null);
  });

  test('without a session: no_session', async () => {
    await rejectsWith(client().refresh(), ErrorCode.NO_SESSION, 0);
  });
});

describe('errors and retries (request counts; backoff timing is in timing.test.mjs)', () => {
  test('503 store_unavailable is retried, then succeeds', async () => {
    const c = client();
    await c.createSession('jwt:user_503');
    const unavailable = { status: 503, body: { success: false, error: { code: 'store_unavailable', message: 'x' } } };
    stub.inject(unavailable, unavailable);
    assert.equal((await c.validate()).valid, true);
    assert.equal(stub.count('GET', '/api/session/validate'), 3);
    c.dispose();
  });

  test('503 past the retries: a typed, retryable store_unavailable error', async () => {
    const c = client({ retries: 2 });
    await c.createSession('jwt:user_503_twice');
    const unavailable = { status: 503, body: { success: false, error: { code: 'store_unavailable', message: 'down' } } };
    stub.inject(unavailable, unavailable, unavailable);
    await assert.rejects(c.stats(), (e) => {
      assert.ok(e instanceof SessionError);
      assert.equal(e.code, 'store_unavailable');
      assert.equal(e.status, 503);
      assert.equal(e.retryable, true);
      assert.equal(e.message, 'down');
      return true;
    });
    assert.equal(stub.count('GET', '/api/session/stats'), 3);
    c.dispose();
  });

  test('a dropped connection is a network error, retried', async () => {
    const c = client();
    await c.createSession('jwt:user_drop');
    stub.inject({ destroy: true });
    assert.equal((await c.stats()).active_sessions, 1);
    assert.equal(stub.count('GET', '/api/session/stats'), 2);
    c.dispose();
  });

  test('nothing listening: network_error with status 0, after the retries', async () => {
    const dead = await startStub();
    const url = dead.url;
    await dead.close();
    const c = new SessionClient({ baseUrl: url, storage: 'memory', retries: 2, retryBaseMs: 1 });
    await rejectsWith(c.createSession('jwt:user_x'), ErrorCode.NETWORK_ERROR, 0);
  });

  for (const [status, code] of [
    [400, 'invalid_request'],
    [401, 'invalid_token'],
    [403, 'forbidden'],
    [404, 'cache_miss'],
    [405, 'method_not_allowed'],
    [413, 'payload_too_large'],
  ]) {
    test(`${status} ${code} is never retried`, async () => {
      const c = client();
      await c.createSession('jwt:user_4xx');
      stub.requests.length = 0;
      stub.inject({ status, body: { success: false, error: { code, message: code } } });
      await rejectsWith(c.stats(), code, status);
      assert.equal(stub.requests.length, 1);
      c.dispose();
    });
  }

  test('429 without a service body is rate_limited, not retried', async () => {
    const c = client();
    await c.createSession('jwt:user_429');
    stub.requests.length = 0;
    stub.inject({ status: 429, body: { message: 'Too Many Requests' } });
    await rejectsWith(c.stats(), ErrorCode.RATE_LIMITED, 429);
    assert.equal(stub.requests.length, 1);
    c.dispose();
  });

  test('an unknown route (not the service) is http_404; a 200 that is not JSON is bad_response', async () => {
    const wrong = new SessionClient({ baseUrl: `${stub.url}/prefix`, storage: 'memory' });
    await rejectsWith(wrong.createSession('jwt:user_x'), 'http_404', 404);
    const c = client();
    stub.inject({ status: 200, body: '<html>' });
    await rejectsWith(c.createSession('jwt:user_x'), ErrorCode.BAD_RESPONSE, 200);
  });

  test('a session call with a token the service refuses forgets it', async () => {
    const c = client();
    await c.createSession('jwt:user_gone');
    stub.sessions.clear();
    await rejectsWith(c.getUserCache(), ErrorCode.INVALID_TOKEN, 401);
    assert.equal(await c.getSession(), null);
    await rejectsWith(c.getUserCache('user_gone'), ErrorCode.NO_SESSION, 0);
  });
});

describe('user cache', () => {
  test('miss is undefined; put then get round-trips any JSON; userId defaults to the session user', async () => {
    const c = client();
    await c.createSession('jwt:user_cache');
    assert.equal(await c.getUserCache('user_cache'), undefined);
    const data = { theme: 'dark', recent: ['#ff0000', '#00ff00'], n: 3, nested: { ok: true } };
    const put = await c.putUserCache('user_cache', data);
    assert.equal(put.expiresIn, 3600);
    assert.match(put.expiresAt, /Z$/);
    assert.deepEqual(await c.getUserCache('user_cache'), data);
    assert.deepEqual(await c.getUserCache(), data);
    await c.putUserCache(undefined, [1, 2]);
    assert.deepEqual(await c.getUserCache(), [1, 2]);
    c.dispose();
  });

  test("another user's cache is forbidden (403); the session stays", async () => {
    const c = client();
    await c.createSession('jwt:user_mine');
    await rejectsWith(c.getUserCache('user_theirs'), ErrorCode.FORBIDDEN, 403);
    await rejectsWith(c.putUserCache('user_theirs', { x: 1 }), ErrorCode.FORBIDDEN, 403);
    assert.notEqual(await c.getToken(), null);
    c.dispose();
  });

  test('user ids are path-encoded; too large is payload_too_large; undefined data is refused', async () => {
    const c = client();
    await c.createSession('jwt:user_enc');
    await rejectsWith(c.getUserCache('a/b?c'), ErrorCode.FORBIDDEN, 403);
    assert.equal(stub.requests.at(-1).path, '/api/cache/user/a%2Fb%3Fc');
    await rejectsWith(c.putUserCache('user_enc', { big: 'x'.repeat(2000) }), ErrorCode.PAYLOAD_TOO_LARGE, 413);
    await assert.rejects(c.putUserCache('user_enc', undefined), TypeError);
    c.dispose();
  });
});

describe('logout, logout-all, stats', () => {
  test('logout ends the session on the service and here', async () => {
    const c = client();
    await c.createSession('jwt:user_lo');
    const token = await c.getToken();
    assert.deepEqual(await c.logout(), { loggedOut: true });
    assert.equal(stub.sessions.has(token), false);
    assert.equal(await c.getToken(), null);
    assert.deepEqual(await c.logout(), { loggedOut: false });
  });

  test('logout of a session the service no longer knows still succeeds', async () => {
    const c = client();
    await c.createSession('jwt:user_lo2');
    stub.sessions.clear();
    assert.deepEqual(await c.logout(), { loggedOut: true });
    assert.equal(await c.getToken(), null);
  });

  test('logout while the service is unreachable forgets the token here and reports the failure', async () => {
    const c = client({ retries: 1 });
    await c.createSession('jwt:user_lo3');
    stub.inject({ destroy: true }, { destroy: true });
    await rejectsWith(c.logout(), ErrorCode.NETWORK_ERROR, 0);
    assert.equal(await c.getToken(), null);
  });

  test('logout-all revokes every session of the user, other devices included', async () => {
    const laptop = client();
    const phone = client();
    const other = client();
    await laptop.createSession('jwt:user_all');
    await phone.createSession('jwt:user_all', { rememberMe: true });
    await other.createSession('jwt:user_someone_else');
    assert.equal((await laptop.stats()).active_sessions, 2);
    assert.deepEqual(await laptop.logoutAll(), { revoked: 2 });
    assert.equal(await laptop.getToken(), null);
    assert.deepEqual(await phone.validate(), { valid: false, code: 'invalid_token' });
    assert.equal((await other.validate()).valid, true);
    other.dispose();
  });

  test('logout-all and stats with a Clerk JWT when no session is stored', async () => {
    const c = client();
    const s = client();
    await s.createSession('jwt:user_jwt_only');
    const st = await c.stats({ clerkToken: 'jwt:user_jwt_only' });
    assert.equal(st.active_sessions, 1);
    assert.equal(stub.requests.at(-1).headers.authorization, 'Bearer jwt:user_jwt_only');
    assert.deepEqual(await c.logoutAll({ clerkToken: 'jwt:user_jwt_only' }), { revoked: 1 });
    await rejectsWith(c.logoutAll(), ErrorCode.NO_SESSION, 0);
    await rejectsWith(c.stats(), ErrorCode.NO_SESSION, 0);
    s.dispose();
  });
});

describe('listSessions, revokeSession (sign out another device)', () => {
  const CHROME_MAC =
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
  // A client whose requests say they come from that browser (Node's own fetch says "node").
  const withUserAgent = (ua) => (url, init) => fetch(url, { ...init, headers: { ...init.headers, 'User-Agent': ua } });

  test('lists the user\'s sessions, newest first, camelCase, exactly one current', async () => {
    const laptop = client({ fetch: withUserAgent(CHROME_MAC) });
    const phone = client();
    const other = client();
    await laptop.createSession('jwt:user_list');
    await phone.createSession('jwt:user_list', { rememberMe: true });
    await other.createSession('jwt:user_list_other');
    const laptopToken = await laptop.getToken();
    const phoneToken = await phone.getToken();
    stub.requests.length = 0;

    const list = await laptop.listSessions();
    const [req] = stub.requests;
    assert.equal(req.method, 'GET');
    assert.equal(req.path, '/api/session/list');
    assert.equal(req.headers['x-session-token'], laptopToken);
    assert.equal(req.headers.authorization, undefined);
    assert.equal(req.body, '', 'no body');

    assert.equal(list.length, 2, JSON.stringify(list));
    for (const s of list) {
      assert.deepEqual(Object.keys(s).sort(), [
        'createdAt', 'current', 'device', 'expiresAt', 'lastRefreshedAt', 'rememberMe', 'sessionId',
      ]);
      assert.match(s.sessionId, /^[A-Za-z0-9_-]{16}$/);
      for (const t of [s.createdAt, s.lastRefreshedAt, s.expiresAt]) assert.match(t, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(s.lastRefreshedAt, s.createdAt, 'not refreshed yet');
      assert.equal(typeof s.rememberMe, 'boolean');
      assert.equal(typeof s.current, 'boolean');
    }
    // Newest first: the phone's session, then the laptop's (this one).
    assert.deepEqual(list.map((s) => s.sessionId), [sessionIdOf(phoneToken), sessionIdOf(laptopToken)]);
    assert.deepEqual(list.map((s) => s.current), [false, true]);
    assert.deepEqual(list.map((s) => s.rememberMe), [true, false]);
    assert.deepEqual(list.map((s) => s.device), ['unknown', 'Chrome 131 on macOS']);
    // The same expiresAt (RFC 3339 as sent) as the session the client holds; no token anywhere.
    assert.equal(list[1].expiresAt, (await laptop.getSession()).expiresAt);
    assert.doesNotMatch(JSON.stringify(list), new RegExp(`${laptopToken}|${phoneToken}`));

    // From the phone, its own session is the current one.
    assert.deepEqual((await phone.listSessions()).map((s) => s.current), [true, false]);
    laptop.dispose();
    phone.dispose();
    other.dispose();
  });

  test('lastRefreshedAt moves with a refresh; expired sessions are not listed', async () => {
    const c = client();
    const old = client();
    await c.createSession('jwt:user_list_refresh');
    await old.createSession('jwt:user_list_refresh');
    const token = await c.getToken();
    stub.sessions.get(token).createdAtMs -= 60_000;
    stub.sessions.get(token).lastRefreshedAtMs -= 60_000;
    stub.sessions.get(await old.getToken()).expiresAtMs = Date.now() - 1000;
    await c.refresh();
    const [s, ...rest] = await c.listSessions();
    assert.deepEqual(rest, []);
    assert.ok(s.lastRefreshedAt > s.createdAt, `${s.createdAt} -> ${s.lastRefreshedAt}`);
    assert.equal(s.expiresAt, (await c.getSession()).expiresAt);
    c.dispose();
    old.dispose();
  });

  test('with a Clerk JWT when no session is stored: none is current; nothing stored, no JWT: no_session', async () => {
    const device = client();
    await device.createSession('jwt:user_list_jwt');
    const c = client();
    stub.requests.length = 0;
    const list = await c.listSessions({ clerkToken: 'jwt:user_list_jwt' });
    assert.equal(list.length, 1);
    assert.equal(list[0].current, false);
    assert.equal(list[0].sessionId, sessionIdOf(await device.getToken()));
    assert.equal(stub.requests[0].headers.authorization, 'Bearer jwt:user_list_jwt');
    assert.equal(stub.requests[0].headers['x-session-token'], undefined);
    await rejectsWith(c.listSessions(), ErrorCode.NO_SESSION, 0);
    await rejectsWith(c.revokeSession(list[0].sessionId), ErrorCode.NO_SESSION, 0);
    assert.equal(stub.requests.length, 1);
    await rejectsWith(c.listSessions({ clerkToken: 'forged' }), ErrorCode.INVALID_JWT, 401);
    await assert.rejects(c.listSessions({ clerkToken: '' }), TypeError);
    device.dispose();
  });

  test('the stored session is used even when a Clerk JWT is given', async () => {
    const c = client();
    await c.createSession('jwt:user_list_both');
    stub.requests.length = 0;
    const list = await c.listSessions({ clerkToken: 'jwt:user_someone_else' });
    assert.deepEqual(list.map((s) => s.current), [true]);
    assert.equal(stub.requests[0].headers['x-session-token'], await c.getToken());
    assert.equal(stub.requests[0].headers.authorization, undefined);
    c.dispose();
  });

  test('a refused token fails the list and is forgotten', async () => {
    const changes = [];
    const c = client({ onSessionChange: (s) => changes.push(s) });
    await c.createSession('jwt:user_list_gone');
    stub.sessions.delete(await c.getToken());
    await rejectsWith(c.listSessions(), ErrorCode.INVALID_TOKEN, 401);
    assert.equal(await c.getToken(), null);
    assert.equal(changes.at(-1), null);
  });

  test('a 200 without a sessions array is bad_response', async () => {
    const c = client();
    await c.createSession('jwt:user_list_bad');
    stub.inject({ status: 200, body: { success: true, user_id: 'user_list_bad' } });
    await rejectsWith(c.listSessions(), ErrorCode.BAD_RESPONSE, 200);
    c.dispose();
  });

  test('revoking the other device: {revoked: true, current: false}; it is signed out there, not here', async () => {
    const laptopChanges = [];
    const laptop = client({ onSessionChange: (s) => laptopChanges.push(s) });
    const phone = client();
    await laptop.createSession('jwt:user_revoke');
    await phone.createSession('jwt:user_revoke');
    const phoneToken = await phone.getToken();
    const other = (await laptop.listSessions()).find((s) => !s.current);
    assert.equal(other.sessionId, sessionIdOf(phoneToken));
    stub.requests.length = 0;

    assert.deepEqual(await laptop.revokeSession(other.sessionId), { revoked: true, current: false });
    const [req] = stub.requests;
    assert.equal(req.method, 'POST');
    assert.equal(req.path, '/api/session/revoke');
    assert.equal(req.headers['x-session-token'], await laptop.getToken());
    assert.equal(req.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(req.body), { session_id: other.sessionId });

    assert.equal(stub.sessions.has(phoneToken), false);
    assert.notEqual(await laptop.getToken(), null, 'this device keeps its session');
    assert.equal(laptopChanges.length, 1, 'only the create changed the session here');
    assert.deepEqual(await phone.validate(), { valid: false, code: 'invalid_token' });
    assert.deepEqual((await laptop.listSessions()).map((s) => s.current), [true]);
    laptop.dispose();
  });

  test('revoking its own session is a logout: {current: true}, dropped here, onSessionChange(null)', async () => {
    const changes = [];
    const c = client({ onSessionChange: (s) => changes.push(s) });
    await c.createSession('jwt:user_revoke_self');
    const token = await c.getToken();
    const [mine] = await c.listSessions();
    assert.equal(mine.current, true);
    assert.deepEqual(await c.revokeSession(mine.sessionId), { revoked: true, current: true });
    assert.equal(stub.sessions.has(token), false);
    assert.equal(await c.getToken(), null);
    assert.equal(await c.getSession(), null);
    assert.deepEqual(changes.map((s) => s?.userId ?? null), ['user_revoke_self', null]);
    assert.deepEqual(await c.validate(), { valid: false, code: 'no_session' });
  });

  test('an unknown id, and another user\'s, are session_not_found (404), not retried; the session stays', async () => {
    assert.equal(ErrorCode.SESSION_NOT_FOUND, 'session_not_found');
    const c = client();
    const stranger = client();
    await c.createSession('jwt:user_revoke_404');
    await stranger.createSession('jwt:user_revoke_stranger');
    const theirs = sessionIdOf(await stranger.getToken());
    stub.requests.length = 0;
    for (const id of ['AAAAAAAAAAAAAAAA', theirs]) {
      await assert.rejects(c.revokeSession(id), (e) => {
        assert.ok(e instanceof SessionError);
        assert.equal(e.code, ErrorCode.SESSION_NOT_FOUND);
        assert.equal(e.status, 404);
        assert.equal(e.retryable, false);
        assert.equal(e.isAuthError, false);
        return true;
      });
    }
    assert.equal(stub.count('POST', '/api/session/revoke'), 2);
    assert.notEqual(await c.getToken(), null);
    assert.equal((await stranger.validate()).valid, true, "another user's session is untouched");
    c.dispose();
    stranger.dispose();
  });

  test('a sessionId that is not a non-empty string fails before any request; a malformed one is invalid_request', async () => {
    const c = client();
    await c.createSession('jwt:user_revoke_args');
    stub.requests.length = 0;
    for (const bad of [undefined, null, '', '  ', 42, { sessionId: 'x' }]) {
      await assert.rejects(c.revokeSession(bad), TypeError, JSON.stringify(bad));
    }
    await assert.rejects(c.revokeSession('AAAAAAAAAAAAAAAA', { clerkToken: 7 }), TypeError);
    assert.equal(stub.requests.length, 0);
    await rejectsWith(c.revokeSession('not-an-id'), ErrorCode.INVALID_REQUEST, 400);
    assert.notEqual(await c.getToken(), null);
    c.dispose();
  });

  test('revoke with a Clerk JWT when no session is stored: current is false', async () => {
    const device = client();
    await device.createSession('jwt:user_revoke_jwt');
    const c = client();
    const [s] = await c.listSessions({ clerkToken: 'jwt:user_revoke_jwt' });
    stub.requests.length = 0;
    assert.deepEqual(await c.revokeSession(s.sessionId, { clerkToken: 'jwt:user_revoke_jwt' }), {
      revoked: true,
      current: false,
    });
    assert.equal(stub.requests[0].headers.authorization, 'Bearer jwt:user_revoke_jwt');
    assert.deepEqual(await device.validate(), { valid: false, code: 'invalid_token' });
    assert.deepEqual(await c.listSessions({ clerkToken: 'jwt:user_revoke_jwt' }), []);
  });
});

describe('storage', () => {
  test('two clients over one chrome.storage area (worker and popup) see the same session', async () => {
    const chrome = fakeChrome();
    const worker = client({ storage: chromeStorage('session', chrome) });
    const popup = client({ storage: chromeStorage('session', chrome) });
    await worker.createSession('jwt:user_shared');
    assert.equal((await popup.validate()).userId, 'user_shared');
    await popup.logout();
    assert.deepEqual(await worker.validate(), { valid: false, code: 'no_session' });
    worker.dispose();
  });

  test('a refresh does not overwrite a session that replaced it meanwhile', async () => {
    const chrome = fakeChrome();
    const a = client({ storage: chromeStorage('session', chrome) });
    const b = client({ storage: chromeStorage('session', chrome) });
    await a.createSession('jwt:user_old');
    const pending = a.refresh();
    await b.createSession('jwt:user_new');
    await pending;
    assert.equal((await a.getSession()).userId, 'user_new');
    a.dispose();
    b.dispose();
  });

  test('a refused token does not take a newer session (made elsewhere meanwhile) with it', async () => {
    const chrome = fakeChrome();
    const b = client({ storage: chromeStorage('session', chrome) });
    const a = client({
      storage: chromeStorage('session', chrome),
      fetch: async (url, init) => {
        const response = await fetch(url, init);
        // While the answer to a's validate is on its way, b signs in again.
        if (url.endsWith('/api/session/validate')) await b.createSession('jwt:user_newer');
        return response;
      },
    });
    await a.createSession('jwt:user_older');
    stub.sessions.clear();
    assert.deepEqual(await a.validate(), { valid: false, code: 'invalid_token' });
    assert.equal((await a.getSession()).userId, 'user_newer');
    a.dispose();
    b.dispose();
  });

  test('storageKey is configurable; clear() forgets without a request', async () => {
    const chrome = fakeChrome();
    const c = client({ storage: chromeStorage('local', chrome), storageKey: 'other' });
    await c.createSession('jwt:user_key');
    assert.ok(chrome.areas.local.get('other').token);
    stub.requests.length = 0;
    await c.clear();
    assert.equal(chrome.areas.local.size, 0);
    assert.equal(stub.requests.length, 0);
  });
});

describe('module-level functions (the default client)', () => {
  test('throw before configure(); then run the whole flow', async () => {
    assert.throws(() => validate(), /configure/);
    const c = configure({ baseUrl: stub.url, storage: 'memory', retryBaseMs: 1 });
    assert.ok(c instanceof SessionClient);
    await createSession('jwt:user_module', { rememberMe: false });
    assert.equal((await validate()).valid, true);
    assert.equal((await refresh()).userId, 'user_module');
    assert.equal((await getSession()).userId, 'user_module');
    await putUserCache('user_module', { a: 1 });
    assert.deepEqual(await getUserCache('user_module'), { a: 1 });
    assert.equal((await stats()).active_sessions, 1);
    const [mine] = await listSessions();
    assert.equal(mine.current, true);
    await assert.rejects(revokeSession('AAAAAAAAAAAAAAAA'), (e) => e.code === 'session_not_found');
    assert.deepEqual(await logoutAll(), { revoked: 1 });
    await createSession('jwt:user_module');
    const [again] = await listSessions();
    assert.deepEqual(await revokeSession(again.sessionId), { revoked: true, current: true });
    assert.equal(await getSession(), null);
    assert.deepEqual(await logout(), { loggedOut: false });
    assert.equal((await validate()).valid, false);
    configure({ baseUrl: stub.url, storage: 'memory' }).dispose();
  });
});
