// CSS Picker session service: the extension-side client.
//
// A dependency-free ES module that runs in a Manifest V3 service worker, an extension page, a
// plain web page and Node (18+). It trades a Clerk JWT for the service's session token, keeps the
// token in chrome.storage (or any storage adapter), refreshes it before it expires, and turns
// the service's error answers into SessionError objects.
//
// The HTTP contract is the service's README ("API"); errors are
// {"success": false, "error": {"code": "<snake_case>", "message": "..."}}.

/** The service's error codes, and the ones this client adds (marked client). */
export const ErrorCode = Object.freeze({
  INVALID_JSON: 'invalid_json',
  INVALID_REQUEST: 'invalid_request',
  MISSING_CREDENTIALS: 'missing_credentials',
  INVALID_TOKEN: 'invalid_token',
  INVALID_JWT: 'invalid_jwt',
  FORBIDDEN: 'forbidden',
  ORIGIN_NOT_ALLOWED: 'origin_not_allowed',
  CACHE_MISS: 'cache_miss',
  // revokeSession: no active session of the caller's user has that id.
  SESSION_NOT_FOUND: 'session_not_found',
  METHOD_NOT_ALLOWED: 'method_not_allowed',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  STORE_UNAVAILABLE: 'store_unavailable',
  AUTH_UNAVAILABLE: 'auth_unavailable',
  // client: an HTTP 429 without a service error body (API Gateway throttling).
  RATE_LIMITED: 'rate_limited',
  // client: an HTTP 503 without a service error body (API Gateway, Lambda throttling).
  SERVICE_UNAVAILABLE: 'service_unavailable',
  // client: no session token is stored; call createSession first.
  NO_SESSION: 'no_session',
  // client: fetch itself failed (offline, DNS, connection refused, CORS refusal).
  NETWORK_ERROR: 'network_error',
  // client: no answer within timeoutMs.
  TIMEOUT: 'timeout',
  // client: a 2xx answer that is not the service's JSON (a proxy's page, a wrong baseUrl).
  // (An error status without the service's error body gets the code `http_<status>`.)
  BAD_RESPONSE: 'bad_response',
});

/**
 * Every failure of a call: `code` is the service's error code (or one of the client's own, see
 * ErrorCode), `status` the HTTP status (0 when no answer came), `retryable` whether the client
 * retries this kind (503 and network failures; never a 4xx).
 */
export class SessionError extends Error {
  constructor(code, message, { status = 0, retryable = false, body, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SessionError';
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    if (body !== undefined) this.body = body;
  }

  /** The credentials are missing, unknown, expired or revoked: sign in again. */
  get isAuthError() {
    return this.status === 401 || this.code === ErrorCode.NO_SESSION;
  }
}

// ---------------------------------------------------------------------------------------------
// Storage adapters: { get(key) -> value | undefined, set(key, value), remove(key) }, each may
// return a promise. The token is never put in web storage: a service worker has none, and any
// script of a page could read it there.
// ---------------------------------------------------------------------------------------------

/**
 * chrome.storage.session (cleared when the browser quits; by default readable only by the
 * extension's own pages and service worker, not by content scripts) or chrome.storage.local
 * (kept across restarts). `api` defaults to `chrome`, else `browser` (Firefox).
 */
export function chromeStorage(area = 'session', api = globalThis.chrome ?? globalThis.browser) {
  if (area !== 'session' && area !== 'local') {
    throw new TypeError(`chromeStorage: area must be "session" or "local", not ${JSON.stringify(area)}`);
  }
  const store = api?.storage?.[area];
  if (!store) {
    throw new TypeError(
      `chromeStorage: chrome.storage.${area} is not available here (needs the "storage" ` +
        'permission, and an extension context); use memoryStorage() outside an extension',
    );
  }
  return {
    async get(key) {
      const items = await store.get(key);
      return items ? items[key] : undefined;
    },
    set: (key, value) => store.set({ [key]: value }),
    remove: (key) => store.remove(key),
  };
}

/** In-memory storage, for Node, tests and plain pages: gone with the process or the page. */
export function memoryStorage() {
  const items = new Map();
  const copy = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
  return {
    get: (key) => copy(items.get(key)),
    set: (key, value) => {
      items.set(key, copy(value));
    },
    remove: (key) => {
      items.delete(key);
    },
  };
}

function resolveStorage(storage) {
  if (storage === undefined) {
    const api = globalThis.chrome ?? globalThis.browser;
    return api?.storage?.session ? chromeStorage('session', api) : memoryStorage();
  }
  if (storage === 'memory') return memoryStorage();
  if (storage === 'session' || storage === 'local') return chromeStorage(storage);
  if (
    storage &&
    typeof storage.get === 'function' &&
    typeof storage.set === 'function' &&
    typeof storage.remove === 'function'
  ) {
    return storage;
  }
  throw new TypeError('storage must be "session", "local", "memory" or an object with get, set and remove');
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

const DEFAULTS = Object.freeze({
  storageKey: 'cssPickerSession',
  timeoutMs: 10_000,
  retries: 3,
  retryBaseMs: 250,
  retryMaxMs: 4_000,
  refreshBeforeSeconds: 300,
  refreshRetryMs: 30_000,
  autoRefresh: true,
});

// setTimeout's largest delay (about 24.8 days); a remember-me session lives 30 days.
const MAX_TIMER_MS = 2 ** 31 - 1;

export class SessionClient {
  #base;
  #opts;
  #storage;
  #fetch;
  #random;
  #refreshing = null;
  #timer = null;
  #disposed = false;

  constructor(options = {}) {
    const { baseUrl } = options;
    if (typeof baseUrl !== 'string' || !/^https?:\/\/[^/]/.test(baseUrl)) {
      throw new TypeError(`baseUrl must be the service's http(s) URL, not ${JSON.stringify(baseUrl)}`);
    }
    this.#base = baseUrl.replace(/\/+$/, '');
    this.#opts = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) {
      if (options[key] !== undefined) this.#opts[key] = options[key];
    }
    for (const key of ['timeoutMs', 'retries', 'retryBaseMs', 'retryMaxMs', 'refreshBeforeSeconds', 'refreshRetryMs']) {
      const v = this.#opts[key];
      if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) {
        throw new TypeError(`${key} must be a number >= 0, not ${JSON.stringify(v)}`);
      }
    }
    this.#opts.onSessionChange = options.onSessionChange;
    this.#opts.onError = options.onError;
    const f = options.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TypeError('no fetch here: pass options.fetch');
    // A bare `fetch` called as a method of another object throws "Illegal invocation".
    this.#fetch = options.fetch ? f : f.bind(globalThis);
    this.#random = options.random ?? Math.random;
    this.#storage = resolveStorage(options.storage);
  }

  /** The service's base URL, without a trailing slash. */
  get baseUrl() {
    return this.#base;
  }

  // --- the API -------------------------------------------------------------------------------

  /** Trades a Clerk JWT for a session token, stores it, and schedules its refresh. */
  async createSession(clerkToken, { rememberMe = false } = {}) {
    requireString(clerkToken, 'clerkToken');
    if (typeof rememberMe !== 'boolean') throw new TypeError('rememberMe must be a boolean');
    const body = await this.#send('POST', '/api/session/create', {
      headers: { Authorization: `Bearer ${clerkToken}` },
      json: { remember_me: rememberMe },
    });
    if (typeof body.session_token !== 'string' || !body.session_token) {
      throw new SessionError(ErrorCode.BAD_RESPONSE, 'session/create answered without a session_token', {
        status: 200,
        body,
      });
    }
    const record = this.#record(body.session_token, body, null);
    await this.#save(record);
    return info(record);
  }

  /**
   * Asks the service whether the stored session is still valid. Resolves
   * `{valid: true, userId, expiresAt, expiresIn, rememberMe}`, or `{valid: false, code}` when there
   * is no session (`no_session`) or the service refused it (`invalid_token`; the stored token is
   * then forgotten). Other failures (network, 503 after retries) reject with a SessionError.
   */
  async validate() {
    const s = await this.#load();
    if (!s) return { valid: false, code: ErrorCode.NO_SESSION };
    let body;
    try {
      body = await this.#send('GET', '/api/session/validate', { headers: { 'X-Session-Token': s.token } });
    } catch (e) {
      if (e instanceof SessionError && e.code === ErrorCode.INVALID_TOKEN) {
        await this.#forget(s.token);
        return { valid: false, code: ErrorCode.INVALID_TOKEN };
      }
      throw e;
    }
    const record = this.#record(s.token, body, s);
    if (await this.#stillCurrent(s.token)) await this.#save(record, { quiet: true });
    return { valid: true, ...info(record) };
  }

  /**
   * Slides the session's expiry (never past the service's absolute cap). Concurrent calls, and
   * the automatic refresh, share one request.
   */
  refresh() {
    if (!this.#refreshing) {
      this.#refreshing = this.#doRefresh().finally(() => {
        this.#refreshing = null;
      });
    }
    return this.#refreshing.then(info);
  }

  /** Ends this session on the service and forgets it here (forgotten here even if the call fails). */
  async logout() {
    const s = await this.#load();
    if (!s) return { loggedOut: false };
    try {
      await this.#send('POST', '/api/session/logout', { headers: { 'X-Session-Token': s.token } });
    } catch (e) {
      if (!(e instanceof SessionError && e.code === ErrorCode.INVALID_TOKEN)) {
        await this.#forget(s.token);
        throw e;
      }
    }
    await this.#forget(s.token);
    return { loggedOut: true };
  }

  /**
   * Ends every session of the user, on every device. Uses the stored session, or a Clerk JWT
   * when given one (`{clerkToken}`). Resolves `{revoked: n}`.
   */
  async logoutAll({ clerkToken } = {}) {
    const s = await this.#load();
    const headers = this.#credentials(s, clerkToken);
    try {
      const body = await this.#send('POST', '/api/session/logout-all', { headers });
      return { revoked: body.revoked };
    } finally {
      if (s) await this.#forget(s.token);
    }
  }

  /**
   * The caller's session figures, as the service sends them: `active_sessions`,
   * `remember_me_sessions`, `oldest_session_created_at`, `newest_session_created_at`, `backend`
   * (and `global` for admins).
   */
  async stats({ clerkToken } = {}) {
    if (clerkToken !== undefined) {
      const body = await this.#send('GET', '/api/session/stats', { headers: this.#credentials(null, clerkToken) });
      return body.stats;
    }
    return this.#withSession(async (s) => {
      const body = await this.#send('GET', '/api/session/stats', { headers: { 'X-Session-Token': s.token } });
      return body.stats;
    });
  }

  /**
   * The user's active sessions, newest first: `[{sessionId, createdAt, lastRefreshedAt, expiresAt,
   * rememberMe, device, current}]` (times RFC 3339, as the service sent them; `current` marks this
   * client's own session, never set with a Clerk JWT). Uses the stored session, or a Clerk JWT
   * when none is stored (`{clerkToken}`).
   */
  async listSessions({ clerkToken } = {}) {
    return this.#withCredentials(clerkToken, async (headers) => {
      const body = await this.#send('GET', '/api/session/list', { headers });
      if (!Array.isArray(body.sessions)) {
        throw new SessionError(ErrorCode.BAD_RESPONSE, 'session/list answered without a sessions array', {
          status: 200,
          body,
        });
      }
      return body.sessions.map((s) => ({
        sessionId: s.session_id,
        createdAt: s.created_at,
        lastRefreshedAt: s.last_refreshed_at,
        expiresAt: s.expires_at,
        rememberMe: s.remember_me,
        device: s.device,
        current: s.current === true,
      }));
    });
  }

  /**
   * Ends one session of the user (a `sessionId` from listSessions): sign out another device.
   * Resolves `{revoked: true, current}`; `current: true` means it was this client's own session,
   * which is then dropped here too (a logout). An unknown id, or another user's, rejects with
   * `session_not_found` (404). Uses the stored session, or a Clerk JWT when none is stored.
   */
  async revokeSession(sessionId, { clerkToken } = {}) {
    requireString(sessionId, 'sessionId');
    return this.#withCredentials(clerkToken, async (headers, s) => {
      const body = await this.#send('POST', '/api/session/revoke', { headers, json: { session_id: sessionId } });
      const current = body.current === true;
      if (current && s) await this.#forget(s.token);
      return { revoked: true, current };
    });
  }

  /** The user's cached data, or `undefined` when there is none (404 cache_miss). */
  async getUserCache(userId) {
    return this.#withSession(async (s) => {
      const path = cachePath(userId ?? s.userId);
      try {
        const body = await this.#send('GET', path, { headers: { 'X-Session-Token': s.token } });
        return body.data;
      } catch (e) {
        if (e instanceof SessionError && e.code === ErrorCode.CACHE_MISS) return undefined;
        throw e;
      }
    });
  }

  /** Stores any JSON value as the user's cache; resolves `{expiresAt, expiresIn}`. */
  async putUserCache(userId, data) {
    if (data === undefined || typeof data === 'function' || typeof data === 'symbol') {
      throw new TypeError('data must be a JSON value');
    }
    return this.#withSession(async (s) => {
      const body = await this.#send('POST', cachePath(userId ?? s.userId), {
        headers: { 'X-Session-Token': s.token },
        json: data,
      });
      return { expiresAt: body.expires_at, expiresIn: body.expires_in };
    });
  }

  /**
   * The stored session (`{userId, expiresAt, expiresIn, rememberMe}`) or null; no request.
   * Also (re)arms the refresh timer: call it when a service worker wakes up.
   */
  async getSession() {
    const s = await this.#load();
    this.#schedule(s);
    return s ? info(s) : null;
  }

  /** The raw session token (for a call this client does not wrap), or null. */
  async getToken() {
    const s = await this.#load();
    return s ? s.token : null;
  }

  /** Forgets the stored session without telling the service. */
  async clear() {
    const s = await this.#load();
    if (s) await this.#forget(s.token);
  }

  /** Stops the refresh timer; the client still works, without automatic refresh. */
  dispose() {
    this.#disposed = true;
    this.#clearTimer();
  }

  // --- sessions ----------------------------------------------------------------------------------

  async #load() {
    const s = await this.#storage.get(this.#opts.storageKey);
    return s && typeof s.token === 'string' && s.token ? s : null;
  }

  async #stillCurrent(token) {
    const s = await this.#load();
    return s !== null && s.token === token;
  }

  // The stored record of a session: local expiry from expires_in (immune to clock skew).
  #record(token, body, prev) {
    const now = Date.now();
    const expiresIn = Number.isFinite(body.expires_in) ? body.expires_in : undefined;
    const parsed = Date.parse(body.expires_at);
    const expiresAtMs = expiresIn !== undefined ? now + expiresIn * 1000 : Number.isFinite(parsed) ? parsed : now;
    const lifetimeMs = prev?.lifetimeMs ?? Math.max(0, expiresAtMs - now);
    return {
      token,
      userId: body.user_id ?? prev?.userId ?? null,
      expiresAt: body.expires_at ?? prev?.expiresAt ?? null,
      expiresAtMs,
      lifetimeMs,
      rememberMe: typeof body.remember_me === 'boolean' ? body.remember_me : prev?.rememberMe ?? false,
      // The expires_at that a refresh could not move out of the refresh window (the absolute
      // cap): no automatic refresh while the expiry stays there.
      exhaustedFor: prev?.exhaustedFor ?? null,
    };
  }

  async #save(record, { quiet = false } = {}) {
    await this.#storage.set(this.#opts.storageKey, record);
    this.#schedule(record);
    if (!quiet) this.#notify(info(record));
  }

  // Forgets `token` unless another session replaced it meanwhile (another tab, the worker).
  async #forget(token) {
    if (!(await this.#stillCurrent(token))) return;
    await this.#storage.remove(this.#opts.storageKey);
    this.#clearTimer();
    this.#notify(null);
  }

  #notify(session) {
    if (typeof this.#opts.onSessionChange === 'function') {
      try {
        this.#opts.onSessionChange(session);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  #credentials(s, clerkToken) {
    if (s) return { 'X-Session-Token': s.token };
    if (clerkToken !== undefined) {
      requireString(clerkToken, 'clerkToken');
      return { Authorization: `Bearer ${clerkToken}` };
    }
    throw new SessionError(ErrorCode.NO_SESSION, 'no session: call createSession first');
  }

  // Runs fn(headers, session) with the stored session (as #withSession does), or with the Clerk
  // JWT when none is stored: fn(headers, null).
  async #withCredentials(clerkToken, fn) {
    if (clerkToken !== undefined) requireString(clerkToken, 'clerkToken');
    if (await this.#load()) return this.#withSession((s) => fn({ 'X-Session-Token': s.token }, s));
    return fn(this.#credentials(null, clerkToken), null);
  }

  // Runs fn with the stored session, refreshed first when it is due; a refused token is forgotten.
  async #withSession(fn) {
    let s = await this.#load();
    if (!s) throw new SessionError(ErrorCode.NO_SESSION, 'no session: call createSession first');
    if (this.#opts.autoRefresh && this.#due(s)) {
      try {
        await this.refresh();
        s = (await this.#load()) ?? s;
      } catch (e) {
        // A refused token fails the call; a flaky network leaves the (still valid) token in use.
        if (!(e instanceof SessionError) || !e.retryable) throw e;
      }
    }
    try {
      return await fn(s);
    } catch (e) {
      if (e instanceof SessionError && e.code === ErrorCode.INVALID_TOKEN) await this.#forget(s.token);
      throw e;
    }
  }

  #marginMs(s) {
    return Math.min(this.#opts.refreshBeforeSeconds * 1000, s.lifetimeMs / 2);
  }

  #due(s) {
    return s.exhaustedFor !== s.expiresAt && Date.now() >= s.expiresAtMs - this.#marginMs(s);
  }

  async #doRefresh() {
    const s = await this.#load();
    if (!s) throw new SessionError(ErrorCode.NO_SESSION, 'no session: call createSession first');
    let body;
    try {
      body = await this.#send('POST', '/api/session/refresh', { headers: { 'X-Session-Token': s.token } });
    } catch (e) {
      if (e instanceof SessionError && e.code === ErrorCode.INVALID_TOKEN) await this.#forget(s.token);
      throw e;
    }
    const record = this.#record(s.token, body, s);
    // At the absolute cap the expiry no longer moves: stop refreshing it automatically.
    if (record.expiresAtMs - Date.now() <= this.#marginMs(record)) record.exhaustedFor = record.expiresAt;
    if (await this.#stillCurrent(s.token)) await this.#save(record);
    return record;
  }

  // --- the refresh timer ---------------------------------------------------------------------------

  #clearTimer() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #arm(delayMs, fn) {
    this.#clearTimer();
    if (this.#disposed) return;
    this.#timer = setTimeout(fn, Math.min(Math.max(0, delayMs), MAX_TIMER_MS));
    // Node: a pending refresh does not keep the process alive.
    if (this.#timer && typeof this.#timer.unref === 'function') this.#timer.unref();
  }

  #schedule(s) {
    if (!this.#opts.autoRefresh || this.#disposed || !s || s.exhaustedFor === s.expiresAt) {
      this.#clearTimer();
      return;
    }
    this.#arm(s.expiresAtMs - this.#marginMs(s) - Date.now(), () => this.#onTimer());
  }

  async #onTimer() {
    this.#timer = null;
    const s = await this.#load();
    if (!s) return;
    // A timer capped at MAX_TIMER_MS, or a session refreshed elsewhere: not due yet.
    if (!this.#due(s)) return this.#schedule(s);
    try {
      await this.refresh();
    } catch (e) {
      if (typeof this.#opts.onError === 'function') {
        try {
          this.#opts.onError(e);
        } catch {
          // ignored
        }
      }
      // Still valid and the failure may pass: try again later, before it expires.
      const left = s.expiresAtMs - Date.now();
      if (e instanceof SessionError && e.retryable && left > 0 && (await this.#stillCurrent(s.token))) {
        this.#arm(Math.min(this.#opts.refreshRetryMs, left / 2), () => this.#onTimer());
      }
    }
  }

  // --- HTTP --------------------------------------------------------------------------------------

  // One call of the service with retries: 503 and network failures, capped exponential backoff
  // with jitter (or the answer's Retry-After, capped the same); never a 4xx.
  async #send(method, path, { headers = {}, json } = {}) {
    for (let attempt = 0; ; attempt++) {
      let error;
      let retryAfterMs;
      try {
        const response = await this.#fetchOnce(method, path, headers, json);
        const body = await readJson(response);
        if (response.ok && body && body.success === true) return body;
        error = errorFromResponse(response, body, method, path);
        retryAfterMs = parseRetryAfter(response.headers?.get?.('retry-after'));
      } catch (e) {
        if (!(e instanceof SessionError)) throw e;
        error = e;
      }
      if (!error.retryable || attempt >= this.#opts.retries) throw error;
      await sleep(this.#backoffMs(attempt, retryAfterMs));
    }
  }

  #backoffMs(attempt, retryAfterMs) {
    const { retryBaseMs, retryMaxMs } = this.#opts;
    if (retryAfterMs !== undefined) return Math.min(retryAfterMs, retryMaxMs);
    const ceiling = Math.min(retryMaxMs, retryBaseMs * 2 ** attempt);
    // Half fixed, half random: callers that failed together do not retry together.
    return Math.round(ceiling / 2 + (ceiling / 2) * this.#random());
  }

  async #fetchOnce(method, path, headers, json) {
    const init = { method, headers: { Accept: 'application/json', ...headers } };
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    }
    const controller = typeof AbortController === 'function' ? new AbortController() : null;
    let timedOut = false;
    let timer = null;
    if (controller) {
      init.signal = controller.signal;
      timer = setTimeout(() => {
        timedOut = true;
        controller.abort();
      }, this.#opts.timeoutMs);
    }
    try {
      return await this.#fetch(this.#base + path, init);
    } catch (e) {
      if (timedOut) {
        throw new SessionError(ErrorCode.TIMEOUT, `${method} ${path}: no answer within ${this.#opts.timeoutMs} ms`, {
          retryable: true,
          cause: e,
        });
      }
      throw new SessionError(ErrorCode.NETWORK_ERROR, `${method} ${path}: ${e?.message ?? e}`, {
        retryable: true,
        cause: e,
      });
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function info(s) {
  return {
    userId: s.userId,
    expiresAt: s.expiresAt,
    expiresIn: Math.max(0, Math.round((s.expiresAtMs - Date.now()) / 1000)),
    rememberMe: s.rememberMe,
  };
}

function requireString(value, name) {
  if (typeof value !== 'string' || value.trim() === '') throw new TypeError(`${name} must be a non-empty string`);
}

function cachePath(userId) {
  requireString(userId, 'userId');
  return `/api/cache/user/${encodeURIComponent(userId)}`;
}

async function readJson(response) {
  let text;
  try {
    text = await response.text();
  } catch (e) {
    throw new SessionError(ErrorCode.NETWORK_ERROR, `the answer's body could not be read: ${e?.message ?? e}`, {
      status: response.status,
      retryable: true,
      cause: e,
    });
  }
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { text };
  }
}

function errorFromResponse(response, body, method, path) {
  const { status } = response;
  const served = body && body.success === false && body.error && typeof body.error.code === 'string';
  if (response.ok) {
    return new SessionError(ErrorCode.BAD_RESPONSE, `${method} ${path}: HTTP ${status} without a JSON success answer`, {
      status,
      body,
    });
  }
  let code;
  if (served) code = body.error.code;
  else if (status === 429) code = ErrorCode.RATE_LIMITED;
  else if (status === 503) code = ErrorCode.SERVICE_UNAVAILABLE;
  else code = `http_${status}`;
  const message = served && body.error.message ? body.error.message : `${method} ${path}: HTTP ${status}`;
  return new SessionError(code, message, { status, retryable: status === 503, body: body ?? undefined });
}

function parseRetryAfter(value) {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------
// One default client for the common case: configure() once, then call the functions.
// ---------------------------------------------------------------------------------------------

let defaultClient = null;

/** Creates a client; `configure()` makes the one the module-level functions use. */
export function createClient(options) {
  return new SessionClient(options);
}

/** Sets up the default client (replacing any earlier one) and returns it. */
export function configure(options) {
  defaultClient?.dispose();
  defaultClient = new SessionClient(options);
  return defaultClient;
}

function client() {
  if (!defaultClient) throw new Error("session-client: call configure({ baseUrl }) first");
  return defaultClient;
}

export const createSession = (clerkToken, options) => client().createSession(clerkToken, options);
export const validate = () => client().validate();
export const refresh = () => client().refresh();
export const logout = () => client().logout();
export const logoutAll = (options) => client().logoutAll(options);
export const stats = (options) => client().stats(options);
export const listSessions = (options) => client().listSessions(options);
export const revokeSession = (sessionId, options) => client().revokeSession(sessionId, options);
export const getUserCache = (userId) => client().getUserCache(userId);
export const putUserCache = (userId, data) => client().putUserCache(userId, data);
export const getSession = () => client().getSession();
