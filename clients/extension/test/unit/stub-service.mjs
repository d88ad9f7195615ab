// A small HTTP stand-in for the session service, on a free loopback port: the README's routes,
// answers and error codes, with sessions in memory. Unit tests call it through the real fetch;
// the real service is exercised by the browser test (test/browser/).
//
// A "Clerk JWT" here is `jwt:<user id>`; anything else is invalid_jwt.

import http from 'node:http';
import { randomBytes } from 'node:crypto';

export async function startStub({ sessionTimeout = 3600, rememberMeTimeout = 2_592_000 } = {}) {
  const sessions = new Map(); // token -> { userId, expiresAtMs, rememberMe }
  const caches = new Map(); // userId -> data
  const requests = []; // { method, path, headers }
  const failures = []; // queued injected answers: { status, body, headers }

  const send = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const fail = (res, status, code, message, extra = {}) =>
    send(res, status, { success: false, error: { code, message }, ...extra });
  const iso = (ms) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  const answer = (token, s) => ({
    success: true,
    user_id: s.userId,
    expires_at: iso(s.expiresAtMs),
    expires_in: Math.max(0, Math.round((s.expiresAtMs - Date.now()) / 1000)),
    remember_me: s.rememberMe,
  });
  const session = (req) => {
    const token = req.headers['x-session-token'];
    if (!token) return { error: ['missing_credentials', 'the X-Session-Token header'] };
    const s = sessions.get(token);
    if (!s || s.expiresAtMs <= Date.now()) {
      return { error: ['invalid_token', 'the session token is unknown, expired or revoked'] };
    }
    return { token, s };
  };
  const jwtUser = (req) => {
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer jwt:(\S+)$/.exec(auth);
    if (!auth) return { error: [401, 'missing_credentials', 'an Authorization: Bearer header'] };
    if (!m) return { error: [401, 'invalid_jwt', 'the Clerk JWT is not valid'] };
    return { userId: m[1] };
  };
  // The caller's user id: a session token first, else a JWT.
  const caller = (req) => {
    if (req.headers['x-session-token']) {
      const r = session(req);
      return r.error ? { error: [401, ...r.error] } : { userId: r.s.userId };
    }
    return jwtUser(req);
  };

  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url, 'http://stub');
      const raw = Buffer.concat(chunks).toString();
      requests.push({ method: req.method, path: url.pathname, headers: req.headers, body: raw });
      const injected = failures.shift();
      if (injected) {
        if (injected.destroy) return req.socket.destroy();
        return send(res, injected.status, injected.body, injected.headers);
      }
      let body;
      if (raw) {
        try {
          body = JSON.parse(raw);
        } catch {
          return fail(res, 400, 'invalid_json', 'the body is not JSON');
        }
      }
      const route = `${req.method} ${url.pathname.replace(/^\/api\/cache\/user\/[^/]+$/, '/api/cache/user/{id}')}`;
      switch (route) {
        case 'POST /api/session/create': {
          const who = jwtUser(req);
          if (who.error) return fail(res, ...who.error);
          const rememberMe = body?.remember_me ?? false;
          if (typeof rememberMe !== 'boolean') return fail(res, 400, 'invalid_request', 'remember_me must be a bool');
          const token = `${Buffer.from(who.userId).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
          const s = {
            userId: who.userId,
            rememberMe,
            expiresAtMs: Date.now() + (rememberMe ? rememberMeTimeout : sessionTimeout) * 1000,
          };
          sessions.set(token, s);
          return send(res, 200, { ...answer(token, s), session_token: token });
        }
        case 'GET /api/session/validate': {
          const r = session(req);
          if (r.error) return fail(res, 401, ...r.error, { valid: false });
          return send(res, 200, { ...answer(r.token, r.s), valid: true });
        }
        case 'POST /api/session/refresh': {
          const r = session(req);
          if (r.error) return fail(res, 401, ...r.error);
          r.s.expiresAtMs = Date.now() + (r.s.rememberMe ? rememberMeTimeout : sessionTimeout) * 1000;
          return send(res, 200, answer(r.token, r.s));
        }
        case 'POST /api/session/logout': {
          const r = session(req);
          if (r.error) return fail(res, 401, ...r.error);
          sessions.delete(r.token);
          return send(res, 200, { success: true, user_id: r.s.userId });
        }
        case 'POST /api/session/logout-all': {
          const who = caller(req);
          if (who.error) return fail(res, ...who.error);
          let revoked = 0;
          for (const [token, s] of sessions) {
            if (s.userId === who.userId) {
              sessions.delete(token);
              revoked++;
            }
          }
          return send(res, 200, { success: true, user_id: who.userId, revoked });
        }
        case 'GET /api/session/stats': {
          const who = caller(req);
          if (who.error) return fail(res, ...who.error);
          const mine = [...sessions.values()].filter((s) => s.userId === who.userId);
          return send(res, 200, {
            success: true,
            stats: {
              user_id: who.userId,
              active_sessions: mine.length,
              remember_me_sessions: mine.filter((s) => s.rememberMe).length,
              backend: 'stub',
            },
          });
        }
        case 'GET /api/cache/user/{id}':
        case 'POST /api/cache/user/{id}': {
          const who = caller(req);
          if (who.error) return fail(res, ...who.error);
          const owner = decodeURIComponent(url.pathname.split('/').pop());
          if (owner !== who.userId) return fail(res, 403, 'forbidden', 'a user may only use their own cache');
          if (req.method === 'GET') {
            if (!caches.has(owner)) return fail(res, 404, 'cache_miss', 'no cached data for this user');
            return send(res, 200, { success: true, user_id: owner, data: caches.get(owner) });
          }
          if (raw.length > 1024) return fail(res, 413, 'payload_too_large', 'the body is over CACHE_MAX_BYTES');
          if (body === undefined) return fail(res, 400, 'invalid_json', 'the body is empty');
          caches.set(owner, body);
          return send(res, 200, { success: true, user_id: owner, expires_at: iso(Date.now() + 3600_000), expires_in: 3600 });
        }
        default:
          res.writeHead(404, { 'content-type': 'text/plain' });
          return res.end('no route');
      }
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    sessions,
    caches,
    requests,
    /** Queue answers for the next requests: `{status, body, headers}` or `{destroy: true}`. */
    inject: (...answers) => failures.push(...answers),
    count: (method, path) => requests.filter((r) => r.method === method && r.path === path).length,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}
