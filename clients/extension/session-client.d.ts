// Types of session-client.js, the CSS Picker session service client (ES module).

/** The service's error codes, and the client's own (no_session, network_error, timeout, …). */
export declare const ErrorCode: {
  readonly INVALID_JSON: 'invalid_json';
  readonly INVALID_REQUEST: 'invalid_request';
  readonly MISSING_CREDENTIALS: 'missing_credentials';
  readonly INVALID_TOKEN: 'invalid_token';
  readonly INVALID_JWT: 'invalid_jwt';
  readonly FORBIDDEN: 'forbidden';
  readonly ORIGIN_NOT_ALLOWED: 'origin_not_allowed';
  readonly CACHE_MISS: 'cache_miss';
  readonly SESSION_NOT_FOUND: 'session_not_found';
  readonly METHOD_NOT_ALLOWED: 'method_not_allowed';
  readonly PAYLOAD_TOO_LARGE: 'payload_too_large';
  readonly STORE_UNAVAILABLE: 'store_unavailable';
  readonly AUTH_UNAVAILABLE: 'auth_unavailable';
  readonly RATE_LIMITED: 'rate_limited';
  readonly SERVICE_UNAVAILABLE: 'service_unavailable';
  readonly NO_SESSION: 'no_session';
  readonly NETWORK_ERROR: 'network_error';
  readonly TIMEOUT: 'timeout';
  readonly BAD_RESPONSE: 'bad_response';
};

/** One of ErrorCode's values, or `http_<status>` for an error answer without the service's body. */
export type SessionErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode] | `http_${number}`;

export declare class SessionError extends Error {
  constructor(
    code: string,
    message: string,
    options?: { status?: number; retryable?: boolean; body?: unknown; cause?: unknown },
  );
  readonly name: 'SessionError';
  /** The service's `error.code`, or one of the client's own codes. */
  readonly code: SessionErrorCode;
  /** The HTTP status; 0 when no answer came (network_error, timeout, no_session). */
  readonly status: number;
  /** True for 503 and network failures, which the client already retried; never for a 4xx. */
  readonly retryable: boolean;
  /** The answer's JSON body, when there was one. */
  readonly body?: unknown;
  /** 401, or no session stored: the user has to sign in again. */
  readonly isAuthError: boolean;
}

/** Where the session record lives. Each method may return a promise. */
export interface StorageAdapter {
  get(key: string): unknown | Promise<unknown>;
  set(key: string, value: unknown): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** chrome.storage.session (default area) or chrome.storage.local; `api` defaults to `chrome`, else `browser`. */
export declare function chromeStorage(area?: 'session' | 'local', api?: unknown): StorageAdapter;
/** A Map in memory: for Node, tests and plain pages. */
export declare function memoryStorage(): StorageAdapter;

export interface SessionClientOptions {
  /** The API's base URL: the API Gateway URL, or `http://127.0.0.1:9000` for `make run`. */
  baseUrl: string;
  /**
   * `'session'` (chrome.storage.session), `'local'` (chrome.storage.local), `'memory'`, or an
   * adapter. Default: chrome.storage.session when present, else memory.
   */
  storage?: 'session' | 'local' | 'memory' | StorageAdapter;
  /** The storage key of the session record. Default `cssPickerSession`. */
  storageKey?: string;
  /** A fetch implementation. Default: the global fetch. */
  fetch?: typeof fetch;
  /** Per attempt. Default 10000. */
  timeoutMs?: number;
  /** Retries after the first attempt, for 503 and network failures only. Default 3. */
  retries?: number;
  /** Backoff of the first retry; doubles each time. Default 250. */
  retryBaseMs?: number;
  /** Cap of one backoff (also caps Retry-After). Default 4000. */
  retryMaxMs?: number;
  /** Refresh this long before expiry (at most half the session's lifetime). Default 300. */
  refreshBeforeSeconds?: number;
  /** After a failed automatic refresh, try again this much later (before expiry). Default 30000. */
  refreshRetryMs?: number;
  /** Refresh with a timer, and before a call when the session is due. Default true. */
  autoRefresh?: boolean;
  /** Called with the new session, or null when it is gone (logout, revoked, expired). */
  onSessionChange?: (session: SessionInfo | null) => void;
  /** Called when an automatic (timer) refresh fails. */
  onError?: (error: SessionError) => void;
  /** Random source in [0, 1) for backoff jitter. Default Math.random. */
  random?: () => number;
}

export interface SessionInfo {
  userId: string;
  /** RFC 3339, as the service sent it. */
  expiresAt: string;
  /** Seconds left, counted from when the service answered (clock-skew free). */
  expiresIn: number;
  rememberMe: boolean;
}

export type ValidateResult =
  | ({ valid: true } & SessionInfo)
  | { valid: false; code: 'no_session' | 'invalid_token' };

/** As the service sends them. */
export interface SessionStats {
  user_id: string;
  active_sessions: number;
  remember_me_sessions: number;
  oldest_session_created_at: string | null;
  newest_session_created_at: string | null;
  backend: string;
  global?: Record<string, unknown>;
  [key: string]: unknown;
}

/** One active session of the user, as listSessions resolves it (newest first). */
export interface SessionSummary {
  /** Opaque, 16 base64url characters; what revokeSession takes. Never usable as a token. */
  sessionId: string;
  /** RFC 3339 (UTC, seconds), as the service sent it. */
  createdAt: string;
  /** RFC 3339; the creation time until the first refresh. */
  lastRefreshedAt: string;
  /** RFC 3339. */
  expiresAt: string;
  rememberMe: boolean;
  /** A short label from the User-Agent at create (`Chrome 131 on macOS`), or `unknown`. */
  device: string;
  /** This client's own session; always false when listed with a Clerk JWT. */
  current: boolean;
}

/** `current: true`: it was this client's own session, now dropped here too (a logout). */
export interface RevokeResult {
  revoked: true;
  current: boolean;
}

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export declare class SessionClient {
  constructor(options: SessionClientOptions);
  readonly baseUrl: string;
  createSession(clerkToken: string, options?: { rememberMe?: boolean }): Promise<SessionInfo>;
  validate(): Promise<ValidateResult>;
  refresh(): Promise<SessionInfo>;
  logout(): Promise<{ loggedOut: boolean }>;
  logoutAll(options?: { clerkToken?: string }): Promise<{ revoked: number }>;
  stats(options?: { clerkToken?: string }): Promise<SessionStats>;
  /** The user's active sessions, newest first. The stored session, else the Clerk JWT. */
  listSessions(options?: { clerkToken?: string }): Promise<SessionSummary[]>;
  /** Ends one session of the user; rejects with `session_not_found` (404) for an unknown id. */
  revokeSession(sessionId: string, options?: { clerkToken?: string }): Promise<RevokeResult>;
  /** The cached data, or undefined on a cache miss. userId defaults to the session's user. */
  getUserCache<T extends Json = Json>(userId?: string): Promise<T | undefined>;
  putUserCache(userId: string | undefined, data: Json): Promise<{ expiresAt: string; expiresIn: number }>;
  /** The stored session, no request; re-arms the refresh timer (call it when a worker wakes). */
  getSession(): Promise<SessionInfo | null>;
  getToken(): Promise<string | null>;
  clear(): Promise<void>;
  dispose(): void;
}

export declare function createClient(options: SessionClientOptions): SessionClient;
/** Sets up the client the functions below use; returns it. */
export declare function configure(options: SessionClientOptions): SessionClient;

export declare function createSession(clerkToken: string, options?: { rememberMe?: boolean }): Promise<SessionInfo>;
export declare function validate(): Promise<ValidateResult>;
export declare function refresh(): Promise<SessionInfo>;
export declare function logout(): Promise<{ loggedOut: boolean }>;
export declare function logoutAll(options?: { clerkToken?: string }): Promise<{ revoked: number }>;
export declare function stats(options?: { clerkToken?: string }): Promise<SessionStats>;
export declare function listSessions(options?: { clerkToken?: string }): Promise<SessionSummary[]>;
export declare function revokeSession(sessionId: string, options?: { clerkToken?: string }): Promise<RevokeResult>;
export declare function getUserCache<T extends Json = Json>(userId?: string): Promise<T | undefined>;
export declare function putUserCache(userId: string | undefined, data: Json): Promise<{ expiresAt: string; expiresIn: number }>;
export declare function getSession(): Promise<SessionInfo | null>;
