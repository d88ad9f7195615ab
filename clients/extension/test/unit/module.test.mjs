// The module itself: dependency-free, MV3-safe (no web storage, no DOM), and its .d.ts in step.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as mod from '../../session-client.js';

const src = readFileSync(new URL('../../session-client.js', import.meta.url), 'utf8');
const dts = readFileSync(new URL('../../session-client.d.ts', import.meta.url), 'utf8');
const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
// Comments may name what the code avoids; the code may not use it.
const code = src.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:])\/\/.*$/gm, '$1');

test('no imports, no require: dependency-free', () => {
  assert.doesNotMatch(code, /^\s*import\s/m);
  assert.doesNotMatch(code, /\bimport\s*\(/);
  assert.doesNotMatch(code, /\brequire\s*\(/);
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
});

test('no web storage and no DOM: runs in a Manifest V3 service worker', () => {
  for (const word of ['localStorage', 'sessionStorage', 'indexedDB', 'document', 'window', 'XMLHttpRequest']) {
    assert.doesNotMatch(code, new RegExp(`\\b${word}\\b`), word);
  }
});

test('every runtime export is declared in session-client.d.ts, and the other way round', () => {
  const declared = new Set(
    [...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]),
  );
  assert.deepEqual([...declared].sort(), Object.keys(mod).sort());
});

test('the API the issue names is there', () => {
  for (const name of ['createSession', 'validate', 'refresh', 'logout', 'logoutAll', 'stats', 'listSessions', 'revokeSession', 'getUserCache', 'putUserCache']) {
    assert.equal(typeof mod[name], 'function', name);
    assert.equal(typeof mod.SessionClient.prototype[name], 'function', `SessionClient#${name}`);
  }
  const e = new mod.SessionError('forbidden', 'no', { status: 403 });
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'SessionError');
  assert.equal(e.code, mod.ErrorCode.FORBIDDEN);
  assert.equal(e.status, 403);
  assert.equal(e.retryable, false);
  assert.equal(e.isAuthError, false);
  assert.equal(new mod.SessionError('invalid_token', '', { status: 401 }).isAuthError, true);
});
