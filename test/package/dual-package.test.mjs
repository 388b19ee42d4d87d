// The dual-package hazard, tested on the built package: one process loads the CommonJS
// build (`require('nest-wire')`) and the ESM build (`import('nest-wire')`), resolved by
// Node through package.json `exports` as in an app. Run by `npm run test:dual` (builds first).
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';

const cjs = createRequire(import.meta.url)('nest-wire');
const esm = await import('nest-wire');
// One Nest for both copies (a peer dependency): quiet its default logger's debug lines.
(await import('@nestjs/common')).Logger.overrideLogger(['error', 'warn']);

/** A WireServer on port 0 with the given handlers, listening. */
async function listen(copy, handlers) {
  const server = new copy.WireServer({ host: '127.0.0.1', port: 0 });
  for (const [pattern, handler] of Object.entries(handlers)) server.addHandler(pattern, handler);
  await new Promise((resolve, reject) => server.listen((err) => (err ? reject(err) : resolve())));
  return server;
}

test('the two builds are distinct copies', () => {
  assert.notEqual(cjs.WireError, esm.WireError);
  assert.notEqual(cjs.WireServer, esm.WireServer);
});

test('instanceof sees errors made by the other copy, by class', () => {
  const fromEsm = new esm.WireTimeoutError(5);
  assert.ok(fromEsm instanceof cjs.WireTimeoutError);
  assert.ok(fromEsm instanceof cjs.WireError);
  assert.ok(!(fromEsm instanceof cjs.WireCancelledError));
  const fromCjs = new cjs.WireConnectionError('gone');
  assert.ok(fromCjs instanceof esm.WireConnectionError);
  assert.ok(fromCjs instanceof esm.WireError);
  assert.ok(!(fromCjs instanceof esm.WireTimeoutError));
  // A plain WireError carrying a subclass's code is still not that subclass.
  assert.ok(!(new cjs.WireError('x', 'WIRE_TIMEOUT') instanceof esm.WireTimeoutError));
  // Errors that are not nest-wire's stay out, whatever their name.
  class WireTimeoutError extends Error {}
  assert.ok(!(new WireTimeoutError() instanceof cjs.WireTimeoutError));
  assert.ok(!(new Error('x') instanceof esm.WireError));
  assert.ok(!({ code: 'WIRE_TIMEOUT' } instanceof esm.WireError));
});

let inner;
let outer;
const clients = [];
before(async () => {
  // inner (CJS server) reports the deadline its call arrived with.
  inner = await listen(cjs, { inner: async (_data, ctx) => ctx.getDeadline() ?? null });
  // outer (ESM server) calls inner through a CJS client that has no timeout of its own: a
  // deadline reaches inner only if the ESM server's call context is seen by the CJS client.
  const innerClient = new cjs.WireClient({ host: '127.0.0.1', port: inner.port, timeout: 0 });
  clients.push(innerClient);
  outer = await listen(esm, {
    outer: async () => {
      const { firstValueFrom } = await import('rxjs');
      return firstValueFrom(innerClient.send('inner', {}));
    },
  });
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.all([inner?.close(), outer?.close()]);
});

test('a call handled by the ESM copy propagates its deadline to a CJS client (shared call context)', async () => {
  const { firstValueFrom } = await import('rxjs');
  // Only CJS clients exist: the ESM server enters the call context only if it sees their count.
  const caller = new cjs.WireClient({ host: '127.0.0.1', port: outer.port, timeout: 20_000 });
  clients.push(caller);
  const before = Date.now();
  const deadline = await firstValueFrom(caller.send('outer', {}));
  assert.equal(typeof deadline, 'number', 'inner got no deadline: the call context is not shared');
  assert.ok(deadline > before && deadline <= Date.now() + 20_000, `deadline ${deadline}`);
});

test('an error from a call through the CJS copy is instanceof the ESM classes', async () => {
  const { firstValueFrom } = await import('rxjs');
  const caller = new cjs.WireClient({ host: '127.0.0.1', port: outer.port });
  clients.push(caller);
  const err = await firstValueFrom(caller.send('no-such-pattern', {})).then(
    () => assert.fail('resolved'),
    (e) => e,
  );
  assert.ok(err instanceof cjs.WireNoHandlerError);
  assert.ok(err instanceof esm.WireNoHandlerError);
  assert.ok(err instanceof esm.WireError);
  assert.equal(err.code, 'WIRE_NO_HANDLER');
});
