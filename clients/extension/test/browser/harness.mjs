// The browser test's machinery: the real local API (a redis-server and `cargo lambda watch` on
// free ports, as `make run` does), a static server for the test page, a Clerk-like RS256 JWT
// signer that the API trusts, the unpacked test extension, and headless Debian chromium driven by
// playwright-core. Everything it starts is stopped by stopAll(), on exit and on SIGINT/SIGTERM too.

import { spawn, spawnSync } from 'node:child_process';
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLIENT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const REPO = path.resolve(CLIENT_DIR, '../..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// The function's first build can take minutes on a busy 2-core machine.
const FIRST_ANSWER_MS = 15 * 60_000;
const BUILD_MS = 20 * 60_000;

export const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'session-client-browser-'));
const started = []; // { pid, what, group, stop() }
let keepWorkDir = false;

// ------------------------------------------------------------------------------------------------
// Processes
// ------------------------------------------------------------------------------------------------

function record(pid, what) {
  // Process groups for `make test-client-browser` to end if this process is killed outright.
  if (process.env.CLIENT_PIDS) fs.appendFileSync(process.env.CLIENT_PIDS, `${pid} ${what}\n`);
}

/** Starts a command in a process group of its own, output to a log file under workDir. */
function startProcess(what, command, args, { env, cwd } = {}) {
  const log = path.join(workDir, `${what}.log`);
  const fd = fs.openSync(log, 'a');
  const child = spawn(command, args, { env, cwd, detached: true, stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  const entry = { child, pid: child.pid, what, log, exited: null };
  child.on('exit', (code, signal) => {
    entry.exited = { code, signal };
  });
  child.on('error', (e) => {
    entry.exited = { error: e };
  });
  if (child.pid) {
    started.push(entry);
    record(child.pid, what);
  }
  return entry;
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

const killGroup = (pgid, signal) => {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already
  }
};

/** Every process under `root`, from /proc (cargo lambda watch runs functions in groups of their own). */
function descendantsOf(root) {
  const children = new Map();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(name));
  }
  const found = [];
  const queue = [root];
  while (queue.length) {
    for (const c of children.get(queue.pop()) ?? []) {
      found.push(c);
      queue.push(c);
    }
  }
  return found;
}

export function logTail(entry, lines = 30) {
  try {
    return fs.readFileSync(entry.log, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Stops what was started, last first: SIGINT/SIGTERM, then SIGKILL to the group and its descendants. */
export async function stopAll() {
  while (started.length) {
    const entry = started.pop();
    if (entry.exited) continue;
    const descendants = descendantsOf(entry.pid);
    killGroup(entry.pid, entry.what === 'cargo-lambda-watch' ? 'SIGINT' : 'SIGTERM');
    for (let i = 0; i < 100 && !entry.exited; i++) await new Promise((r) => setTimeout(r, 100));
    killGroup(entry.pid, 'SIGKILL');
    for (const pid of descendants) {
      if (alive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  }
  if (!keepWorkDir) fs.rmSync(workDir, { recursive: true, force: true });
}

function stopAllNow() {
  for (const entry of started) {
    if (!entry.exited) {
      for (const pid of descendantsOf(entry.pid)) killGroup(pid, 'SIGKILL');
      killGroup(entry.pid, 'SIGKILL');
    }
  }
  started.length = 0;
}
process.on('exit', stopAllNow);
let browserContext = null;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, async () => {
    console.error(`\nbrowser test: ${signal} (interrupted or out of time), stopping what it started`);
    // The browser first, gracefully (it reaps its own children), for at most 5 s.
    if (browserContext) {
      await Promise.race([browserContext.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    }
    const pending = started.filter((e) => !e.exited);
    stopAllNow();
    // Reap them (no zombies left to a PID 1 that may not), for at most 3 s.
    for (let i = 0; i < 30 && pending.some((e) => !e.exited); i++) await new Promise((r) => setTimeout(r, 100));
    console.error(`browser test: logs kept in ${workDir}`);
    process.exit(128 + os.constants.signals[signal]);
  });
}

/** Keeps the logs (and says where) when something failed. */
export function keepLogs() {
  keepWorkDir = true;
  console.error(`browser test: logs kept in ${workDir}`);
}

// ------------------------------------------------------------------------------------------------
// Ports, redis, the functions, watch
// ------------------------------------------------------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function redisPing(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let data = '';
    socket.setTimeout(500, () => socket.destroy());
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) {
        socket.destroy();
        resolve(data.startsWith('+PONG'));
      }
    });
    socket.on('error', () => resolve(false));
    socket.on('close', () => resolve(false));
  });
}

async function waitFor(what, ready, ms, entry) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await ready()) return;
    if (entry?.exited) throw new Error(`${what}: the process exited (${JSON.stringify(entry.exited)})\n${logTail(entry)}`);
    if (Date.now() > deadline) throw new Error(`${what}: not ready within ${ms / 1000} s\n${entry ? logTail(entry) : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function which(command) {
  return spawnSync('sh', ['-c', `command -v "${command}"`], { encoding: 'utf8' }).stdout.trim();
}

export async function startRedis() {
  if (!which('redis-server')) throw new Error('redis-server not found: `make redis` installs it (Debian redis-server)');
  const port = await freePort();
  const dir = path.join(workDir, 'redis');
  fs.mkdirSync(dir);
  const entry = startProcess('redis-server', 'redis-server', [
    '--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
    '--save', '', '--appendonly', 'no', '--daemonize', 'no',
  ]);
  await waitFor(`redis-server on ${port}`, () => redisPing(port), 10_000, entry);
  return { port, url: `redis://127.0.0.1:${port}`, entry };
}

/**
 * The environment for cargo: without the variables cargo sets for a process it runs (a nested
 * cargo that saw CARGO_PKG_*, OUT_DIR, … would rebuild half the dependency tree; see
 * shared/tests/e2e.rs), with the target directory the rest of `make test` builds in.
 */
function cargoEnv(extra = {}) {
  const setByCargo = ['CARGO_PKG_', 'CARGO_MANIFEST_', 'CARGO_BIN_', 'CARGO_CRATE_NAME', 'CARGO_PRIMARY_PACKAGE',
    'CARGO_TARGET_TMPDIR', 'CARGO_RUSTC_CURRENT_DIR', 'OUT_DIR'];
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!setByCargo.some((p) => k.startsWith(p))) env[k] = v;
  }
  env.CARGO_TARGET_DIR = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');
  env.PATH = `${path.join(REPO, '.venv/bin')}:${process.env.PATH}`;
  return { ...env, ...extra };
}

/** The function packages: the crates under functions/ (one Lambda each). */
export function functionPackages() {
  const dir = path.join(REPO, 'functions');
  return fs
    .readdirSync(dir)
    .filter((d) => fs.existsSync(path.join(dir, d, 'Cargo.toml')))
    .map((d) => /^name\s*=\s*"([^"]+)"/m.exec(fs.readFileSync(path.join(dir, d, 'Cargo.toml'), 'utf8'))[1])
    .sort();
}

/** One `cargo build` of the function packages, before watch would build each on its first request. */
export async function buildFunctions() {
  const cargo = process.env.CARGO || 'cargo';
  const packages = functionPackages();
  const args = ['build', ...packages.flatMap((p) => ['-p', p])];
  const t0 = Date.now();
  const entry = startProcess('cargo-build', cargo, args, { env: cargoEnv(), cwd: REPO });
  await waitFor(`cargo ${args.join(' ')}`, () => entry.exited !== null, BUILD_MS);
  if (entry.exited.code !== 0) {
    throw new Error(`cargo ${args.join(' ')} failed (${JSON.stringify(entry.exited)})\n${logTail(entry, 60)}`);
  }
  started.splice(started.indexOf(entry), 1);
  return { ms: Date.now() - t0, packages };
}

/** An RS256 key pair (the API trusts its public half only) and a Clerk-like JWT signer. */
export function jwtKeys(issuer) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const signWith = (key, sub, azp) => {
    const now = Math.floor(Date.now() / 1000);
    const head = b64({ alg: 'RS256', typ: 'JWT' });
    const body = b64({ sub, iss: issuer, azp, iat: now, nbf: now, exp: now + 120 });
    const signature = sign('sha256', Buffer.from(`${head}.${body}`), key).toString('base64url');
    return `${head}.${body}.${signature}`;
  };
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }),
    /** A JWT for `sub`, as Clerk issues it to the frontend at `azp`. */
    sign: (sub, azp) => signWith(privateKey, sub, azp),
    /** Same claims, signed by a key the API does not know. */
    forge: (sub, azp) => signWith(other, sub, azp),
  };
}

/** `cargo lambda watch` from .venv, as `make run` starts it, with the service's own CORS. */
export async function startWatch({ redisUrl, publicPem, issuer, origins, sessionTimeout }) {
  const cargoLambda = process.env.CARGO_LAMBDA || path.join(REPO, '.venv/bin/cargo-lambda');
  if (!fs.existsSync(cargoLambda)) {
    throw new Error(`cargo-lambda not found at ${cargoLambda}: \`make venv\` installs it into .venv`);
  }
  const port = await freePort();
  const env = cargoEnv({
    SESSION_STORE: 'redis',
    REDIS_URL: redisUrl,
    REDIS_CLUSTER: '',
    SESSION_TABLE: '',
    DYNAMODB_ENDPOINT: '',
    CLERK_JWT_KEY: publicPem.trim().replace(/\n/g, '\\n'),
    CLERK_JWKS_URL: '',
    CLERK_ISSUER: issuer,
    ALLOWED_ORIGINS: origins.join(','),
    ADMIN_USER_IDS: '',
    SESSION_TIMEOUT: String(sessionTimeout),
    RUST_LOG: process.env.RUST_LOG || 'info',
  });
  const entry = startProcess('cargo-lambda-watch', cargoLambda, [
    'lambda', 'watch', '--invoke-address', '127.0.0.1', '--invoke-port', String(port),
    '--disable-cors', '--ignore-changes',
  ], { env, cwd: REPO });
  const base = `http://127.0.0.1:${port}`;
  await waitFor('cargo lambda watch listening', () => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  }), 60_000, entry);

  // Each function starts on its first request: ask each once, without credentials (401). Revoke
  // gets a well-formed body, so that only the missing credentials are wrong.
  const routes = [
    ['GET', '/api/session/validate'], ['POST', '/api/session/create'], ['POST', '/api/session/refresh'],
    ['POST', '/api/session/logout'], ['POST', '/api/session/logout-all'], ['GET', '/api/session/stats'],
    ['GET', '/api/session/list'], ['POST', '/api/session/revoke', { session_id: 'AAAAAAAAAAAAAAAA' }],
    ['GET', '/api/cache/user/user_warm_up'], ['POST', '/api/cache/user/user_warm_up'],
  ];
  for (const [method, route, json] of routes) {
    let status;
    await waitFor(`first answer of ${method} ${route}`, async () => {
      try {
        const init = { method, signal: AbortSignal.timeout(FIRST_ANSWER_MS) };
        if (json) Object.assign(init, { headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(json) });
        const response = await fetch(base + route, init);
        status = response.status;
        await response.text();
        return true;
      } catch {
        return false;
      }
    }, FIRST_ANSWER_MS, entry);
    if (status !== 401) throw new Error(`${method} ${route} without credentials: HTTP ${status}, not 401\n${logTail(entry)}`);
  }
  // The function processes, for `make` to end should this process be killed outright.
  for (const pid of descendantsOf(entry.pid)) record(pid, 'lambda-function');
  return { base, port, entry };
}

// ------------------------------------------------------------------------------------------------
// The page server, the test extension, the browser
// ------------------------------------------------------------------------------------------------

/** Serves the test page and the module from 127.0.0.1:<free port>. */
export async function startPageServer() {
  const files = {
    '/': [path.join(CLIENT_DIR, 'test/browser/page.html'), 'text/html; charset=utf-8'],
    '/session-client.js': [path.join(CLIENT_DIR, 'session-client.js'), 'text/javascript; charset=utf-8'],
  };
  const server = http.createServer((req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (req.url === '/favicon.ico') {
      res.writeHead(204).end();
      return;
    }
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': file[1], 'cache-control': 'no-store' });
    res.end(fs.readFileSync(file[0]));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, close: () => new Promise((resolve) => server.close(resolve)) };
}

/**
 * The unpacked test extension in workDir: the module, test/browser/extension/sw.js, and a manifest
 * with a fresh `key`, so its id (and origin) is known before the browser starts.
 */
export function makeExtension() {
  const dir = path.join(workDir, 'extension');
  fs.mkdirSync(dir);
  fs.copyFileSync(path.join(CLIENT_DIR, 'session-client.js'), path.join(dir, 'session-client.js'));
  fs.copyFileSync(path.join(CLIENT_DIR, 'test/browser/extension/sw.js'), path.join(dir, 'sw.js'));
  const der = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
  // Chrome's id of an extension: the first 128 bits of SHA-256 of its public key, in a-p.
  const id = [...createHash('sha256').update(der).digest('hex').slice(0, 32)]
    .map((h) => String.fromCharCode(97 + parseInt(h, 16)))
    .join('');
  const manifest = {
    manifest_version: 3,
    name: 'session-client browser test',
    version: '1.0',
    key: der.toString('base64'),
    background: { service_worker: 'sw.js', type: 'module' },
    // No host_permissions: the service worker's calls are CORS requests from
    // chrome-extension://<id>, which the API must allow by its ALLOWED_ORIGINS.
    permissions: ['storage'],
  };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return { dir, id, origin: `chrome-extension://${id}` };
}

/** Headless Debian chromium, fresh profile, the test extension loaded. */
export async function launchBrowser(extensionDir) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: \`make client-chromium\` installs Debian's chromium`);
  const { chromium } = await import('playwright-core');
  const userDataDir = path.join(workDir, 'chromium-profile');
  fs.mkdirSync(userDataDir);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    // This harness's own handlers close the browser, then stop the servers.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      `--disable-extensions-except=${extensionDir}`, `--load-extension=${extensionDir}`,
    ],
  });
  browserContext = context;
  // Playwright starts chromium in a process group of its own: note it for the make backstop.
  for (const pid of descendantsOf(process.pid)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(userDataDir)) {
        const pgid = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[2]);
        if (pgid === pid) record(pid, 'chromium');
      }
    } catch {
      // gone
    }
  }
  return context;
}
