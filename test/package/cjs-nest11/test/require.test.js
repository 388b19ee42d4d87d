// CommonJS jest (no ESM support switched on): `require('nest-wire')` must load the CJS build.
const { WireClient, WireNoHandlerError, WireServer } = require('nest-wire');
const { WireHealthIndicator } = require('nest-wire/terminus');
const { firstValueFrom } = require('rxjs');

test('require() of nest-wire and nest-wire/terminus in a CommonJS jest test, then a call', async () => {
  expect(typeof WireHealthIndicator).toBe('function');
  const server = new WireServer({ host: '127.0.0.1', port: 0 });
  server.addHandler('sum', async (numbers) => numbers.reduce((a, b) => a + b, 0));
  await new Promise((resolve, reject) => server.listen((err) => (err ? reject(err) : resolve())));
  const client = new WireClient({ host: '127.0.0.1', port: server.port });
  try {
    await expect(firstValueFrom(client.send('sum', [1, 2]))).resolves.toBe(3);
    await expect(firstValueFrom(client.send('missing', {}))).rejects.toBeInstanceOf(WireNoHandlerError);
  } finally {
    client.close();
    await server.close();
  }
});
