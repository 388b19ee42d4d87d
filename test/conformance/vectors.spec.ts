import { readFileSync } from 'node:fs';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { WireClient } from '../../lib/index.js';
import { from } from 'rxjs';
import { startWireApp, type RunningServer } from '../helpers/apps.js';
import { ConformanceAppModule } from './conformance-app.js';
import { runClientCase, runServerCase, type VectorFile } from './vector-runner.js';

/**
 * docs/conformance/vectors.json against the real thing: every `server` case against a
 * WireServer running the conformance service, every `client` case against a WireClient
 * talking to the runner's raw fake server. The same file is meant for peers written in
 * other languages (docs/conformance/README.md).
 */
const file = JSON.parse(
  readFileSync(new URL('../../docs/conformance/vectors.json', import.meta.url), 'utf8'),
) as VectorFile;
const codec = new MsgpackCodec();

describe('conformance vectors', () => {
  it('is a version 2 vector file with uniquely named cases', () => {
    expect(file.format).toBe('nest-wire-conformance');
    expect(file.version).toBe(2);
    const names = file.cases.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
  });

  describe('against a WireServer', () => {
    let running: RunningServer;
    beforeAll(async () => {
      running = await startWireApp(ConformanceAppModule);
    });
    afterAll(async () => {
      await running.app.close();
    });

    const cases = file.cases.filter((c) => c.target === 'server');
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, vector) => {
      await runServerCase(file, vector, running.port);
    });
  });

  describe('against a WireClient', () => {
    const cases = file.cases.filter((c) => c.target === 'client');
    if (cases.length === 0) return;
    it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, vector) => {
      await runClientCase(file, vector, (port) => {
        const client = new WireClient({
          host: '127.0.0.1',
          port,
          reconnect: { initialDelayMs: 5000, maxDelayMs: 5000 },
        });
        client.on('error', () => {});
        client.connect().catch(() => {});
        return {
          driver: {
            call: (pattern, data) => client.send(pattern, codec.decode(data)),
            callStream: (pattern, values) => client.send(pattern, from(values.map((v) => codec.decode(v)))),
            decode: (bytes) => codec.decode(bytes),
          },
          close: () => client.close(),
        };
      });
    });
  });
});
