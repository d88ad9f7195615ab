// The test extension's Manifest V3 service worker: the module with chrome.storage.session, the
// way an extension would use it. The browser test drives it through playwright's worker.evaluate.
import * as sc from './session-client.js';

self.sc = sc;
self.attempt = async (fn) => {
  try {
    return { ok: true, value: await fn() };
  } catch (e) {
    return { ok: false, name: e.name, code: e.code, status: e.status, retryable: e.retryable, message: e.message };
  }
};
// What chrome.storage.session holds under the client's key (the test checks the token is there).
self.stored = async () => (await chrome.storage.session.get('cssPickerSession')).cssPickerSession ?? null;
