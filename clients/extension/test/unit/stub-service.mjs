// A small HTTP stand-in for the session service, on a free loopback port: the README's routes,
// answers and error codes, with sessions in memory. Unit tests call it through the real fetch;
// the real service is exercised by the browser test (test/browser/).
//
// A "Clerk JWT" here is `jwt:<user id>`; anything else is invalid_jwt.

import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

/** A session's public id, as the service makes it: base64url of the first 12 bytes of SHA-256(token). */
export const sessionIdOf = (token) => createHash('sha256').update(token).digest().subarray(0, 12).toString('base64url');

// A short label of the browser from its User-Agent, like the service's ("Chrome 131 on macOS"):
// a few patterns only; "unknown" for anything else (Node's fetch says "node").
function deviceLabel(ua = '') {
  const b = /\bEdg\/(\d+)/.exec(ua) ?? /\bFirefox\/(\d+)/.exec(ua) ?? /\bChrome\/(\d+)/.exec(ua);
  const browser = b ? `${{ Edg: 'Edge', Firefox: 'Firefox', Chrome: 'Chrome' }[b[0].split('/')[0]]} ${b[1]}` : null;
  const os = /Mac OS X/.test(ua) ? 'macOS' : /Windows/.test(ua) ? 'Windows' : /Android/.test(ua) ? 'Android' : /Linux/.test(ua) ? 'Linux' : null;
  return [browser, os].filter(Boolean).join(' on ') || 'unknown';
}

export async function startStub({ sessionTimeout = 3600, rememberMeTimeout = 2_592_000 } = {}) {
  // token -> { userId, expiresAtMs, rememberMe, createdAtMs, lastRefreshedAtMs, device, seq }
  const sessions = new Map();
  let seq = 0;
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
          const now = Date.now();
          const s = {
            userId: who.userId,
            rememberMe,
            expiresAtMs: now + (rememberMe ? rememberMeTimeout : sessionTimeout) * 1000,
            createdAtMs: now,
            lastRefreshedAtMs: now,
            device: deviceLabel(req.headers['user-agent']),
            seq: seq++,
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
          r.s.lastRefreshedAtMs = Date.now();
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
        case 'GET /api/session/list': {
          const who = caller(req);
          if (who.error) return fail(res, ...who.error);
          const token = req.headers['x-session-token'];
          const mine = [...sessions]
            .filter(([, s]) => s.userId === who.userId && s.expiresAtMs > Date.now())
            .sort(([, a], [, b]) => b.createdAtMs - a.createdAtMs || b.seq - a.seq);
          return send(res, 200, {
            success: true,
            user_id: who.userId,
            // Members in alphabetical order, as the service's serde_json writes them.
            sessions: mine.map(([t, s]) => ({
              created_at: iso(s.createdAtMs),
              current: t === token,
              device: s.device,
              expires_at: iso(s.expiresAtMs),
              last_refreshed_at: iso(s.lastRefreshedAtMs),
              remember_me: s.rememberMe,
              session_id: sessionIdOf(t),
            })),
          });
        }
        case 'POST /api/session/revoke': {
          const who = caller(req);
          if (who.error) return fail(res, ...who.error);
          if (raw.length > 4096) return fail(res, 413, 'payload_too_large', 'the body is over 4 KiB');
          if (body === undefined) return fail(res, 400, 'invalid_json', 'the body is empty');
          if (!body || typeof body !== 'object' || Array.isArray(body)) {
            return fail(res, 400, 'invalid_request', 'the body must be a JSON object');
          }
          const id = body.session_id;
          if (typeof id !== 'string' || !/^[A-Za-z0-9_-]{16}$/.test(id)) {
            return fail(res, 400, 'invalid_request', 'session_id must be 16 base64url characters');
          }
          const found = [...sessions].find(
            ([t, s]) => s.userId === who.userId && s.expiresAtMs > Date.now() && sessionIdOf(t) === id,
          );
          // Another user's id answers exactly as an unknown one.
          if (!found) return fail(res, 404, 'session_not_found', 'no active session of this user has that id');
          sessions.delete(found[0]);
          return send(res, 200, {
            success: true,
            user_id: who.userId,
            session_id: id,
            current: found[0] === req.headers['x-session-token'],
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
