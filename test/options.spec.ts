import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { ClientProxyFactory, ClientsModule } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { firstValueFrom } from 'rxjs';
import { WireClient, WireOptionsError, WireServer } from '../lib/index.js';
import { closestKey } from '../lib/option-keys.js';
import { CALL_OPTION_KEYS, CLIENT_OPTION_KEYS, SERVER_OPTION_KEYS } from '../lib/options.js';
import { INTEGER_OPTIONS } from '../lib/option-table.js';

/** The constructor's error, asserted to be a WireOptionsError. */
function refusal(make: () => unknown): WireOptionsError {
  try {
    const made = make() as { close?: () => unknown } | undefined;
    void made?.close?.();
  } catch (err) {
    expect(err).toBeInstanceOf(WireOptionsError);
    expect((err as WireOptionsError).code).toBe('WIRE_OPTIONS');
    return err as WireOptionsError;
  }
  throw new Error('expected a WireOptionsError, nothing was thrown');
}

const server = (options: object) => new WireServer(options);
const client = (options: object) => new WireClient(options);

describe('unknown options are refused', () => {
  it.each([
    ['server', server],
    ['client', client],
  ])("%s: Nest TCP's tlsOptions names tls, with or without a value", (_side, make) => {
    for (const options of [{ tlsOptions: { rejectUnauthorized: false } }, { tlsOptions: undefined }]) {
      const err = refusal(() => make(options));
      expect(err.message).toMatch(/unknown option 'tlsOptions'; did you mean 'tls'\?/);
      expect(err.message).toMatch(/same Node TLS options/);
    }
  });

  it('names the closest option for typos, case slips and missing units', () => {
    expect(refusal(() => client({ poolsize: 2 })).message).toMatch(/'poolsize'; did you mean 'poolSize'\?/);
    expect(refusal(() => client({ timout: 5 })).message).toMatch(/did you mean 'timeout'\?/);
    expect(refusal(() => client({ connectTimeout: 5 })).message).toMatch(/did you mean 'connectTimeoutMs'\?/);
    expect(refusal(() => server({ heartbeatInterval: 5 })).message).toMatch(/did you mean 'heartbeatIntervalMs'\?/);
    expect(refusal(() => server({ idleTimeout: 5 })).message).toMatch(/did you mean 'idleTimeoutMs'\?/);
    expect(refusal(() => server({ maxConnection: 5 })).message).toMatch(/did you mean 'maxConnections'\?/);
  });

  it('maps the other Nest TCP options to what nest-wire has, or says there is none', () => {
    expect(refusal(() => server({ maxBufferSize: 1 })).message).toMatch(
      /did you mean 'maxFrameSize'\?.*bytes \(not characters\)/,
    );
    expect(refusal(() => client({ maxSendBufferSize: 1 })).message).toMatch(/did you mean 'maxQueuedBytes'\?/);
    expect(refusal(() => server({ incompleteMessageTimeout: 1 })).message).toMatch(/heartbeatIntervalMs/);
    expect(refusal(() => client({ retryAttempts: 3 })).message).toMatch(/did you mean 'reconnect'\?/);
    const serverRetry = refusal(() => server({ retryAttempts: 3 })).message;
    expect(serverRetry).not.toMatch(/did you mean/); // a server has no reconnect option
    expect(serverRetry).toMatch(/does not listen again/);
    expect(refusal(() => server({ socketClass: class {} })).message).toMatch(/owns its framing/);
    expect(refusal(() => client({ transport: 0 })).message).toMatch(/belongs in the ClientsModule/);
  });

  it.each([
    ['server', server],
    ['client', client],
  ])("%s: Nest's serializer and deserializer are refused, saying why and what to use", (_side, make) => {
    const serializer = refusal(() => make({ serializer: { serialize: (v: unknown) => v } })).message;
    expect(serializer).toMatch(/unknown option 'serializer'.*fixed binary fields.*codec.*serializeResponse/);
    const deserializer = refusal(() => make({ deserializer: { deserialize: (v: unknown) => v } })).message;
    expect(deserializer).toMatch(/unknown option 'deserializer'.*decodes binary frames.*codec/);
  });

  it('lists the valid options when nothing is close', () => {
    const err = refusal(() => client({ banana: 1 }));
    expect(err.message).toMatch(/^WireClient: unknown option 'banana'\. Valid options: host, port, .*propagate$/);
  });

  it('checks the keys of nested option objects', () => {
    expect(refusal(() => client({ reconnect: { initialDelay: 10 } })).message).toMatch(
      /WireClient option reconnect: unknown option 'initialDelay'; did you mean 'initialDelayMs'\?/,
    );
    expect(refusal(() => server({ compression: { algorithm: 'deflate', threshold: 10 } })).message).toMatch(
      /compression: unknown option 'threshold'; did you mean 'thresholdBytes'\?/,
    );
  });

  it('refuses them through ClientsModule.register and ClientProxyFactory.create too', () => {
    const err = refusal(() =>
      ClientsModule.register([{ name: 'X', customClass: WireClient, options: { tlsOptions: {} } }]),
    );
    expect(err.message).toMatch(/did you mean 'tls'/);
    expect(
      refusal(() => ClientProxyFactory.create({ customClass: WireClient, options: { tlsOptions: {} } })).message,
    ).toMatch(/did you mean 'tls'/);
  });

  it('refuses them through ClientsModule.registerAsync when the module is compiled', async () => {
    const compiling = Test.createTestingModule({
      imports: [
        ClientsModule.registerAsync([
          { name: 'X', useFactory: () => ({ customClass: WireClient, options: { port: 1, tlsOptions: {} } }) },
        ]),
      ],
    }).compile();
    await expect(compiling).rejects.toThrow(/unknown option 'tlsOptions'; did you mean 'tls'/);
  });

  it('accepts what Nest itself hands a custom client: options, or nothing at all', () => {
    // ClientProxyFactory.create passes `options` as given (undefined when absent) and adds nothing.
    const made = [
      ClientProxyFactory.create({ customClass: WireClient }),
      ClientProxyFactory.create({ customClass: WireClient, options: { host: '127.0.0.1', port: 1 } }),
    ] as WireClient[];
    for (const c of made) {
      expect(c).toBeInstanceOf(WireClient);
      c.close();
    }
  });

  describe('per-call options of send()', () => {
    const c = new WireClient({ host: '127.0.0.1', port: 1 });
    afterAll(() => c.close());

    it('fails the call on an unknown key, naming the closest one', async () => {
      const err: unknown = await firstValueFrom(c.send('x', 1, { timeot: 5 } as never)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireOptionsError);
      expect((err as Error).message).toBe("send(): unknown option 'timeot'; did you mean 'timeout'?");
      const meta: unknown = await firstValueFrom(c.send('x', 1, { headers: {} } as never)).catch((e: unknown) => e);
      expect((meta as Error).message).toMatch(
        /^send\(\): unknown option 'headers'\. Valid options: timeout, metadata, propagate, idempotent$/,
      );
    });

    it('fails the call when the options are not an object', async () => {
      const err: unknown = await firstValueFrom(c.send('x', 1, null as never)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WireOptionsError);
      expect((err as Error).message).toMatch(/send\(\) options must be an object/);
    });
  });
});

describe('closestKey', () => {
  it('finds nothing for a name far from every option', () => {
    expect(closestKey('zzz', ['timeout', 'metadata'])).toBeNull();
    expect(closestKey('x', ['timeout', 'metadata'])).toBeNull();
  });

  it('prefers the same name in another case, then a prefix, then the smallest edit', () => {
    expect(closestKey('POOLSIZE', ['poolSize', 'port'])).toBe('poolSize');
    expect(closestKey('portNumber', ['path', 'port'])).toBe('port');
    expect(closestKey('strem', ['streamCredit', 'stream'])).toBe('stream');
  });
});

describe('the known-key lists and the README options table', () => {
  // Rows of the table: | `name` | side | ...
  const rows = [
    ...readFileSync(new URL('../README.md', import.meta.url), 'utf8').matchAll(
      /^\| `(\w+)` \| (both|server|client|call) \|/gm,
    ),
  ];
  const documented = (...sides: string[]) => new Set(rows.filter((r) => sides.includes(r[2])).map((r) => r[1]));

  it('document every accepted option, and accept every documented one', () => {
    expect(rows.length).toBeGreaterThan(30);
    expect(new Set(Object.keys(SERVER_OPTION_KEYS))).toEqual(documented('both', 'server'));
    expect(new Set(Object.keys(CLIENT_OPTION_KEYS))).toEqual(documented('both', 'client'));
    expect(new Set(Object.keys(CALL_OPTION_KEYS))).toEqual(documented('call'));
  });
});

describe('the integer option rows and the README options table', () => {
  const table = new Map(
    [
      ...readFileSync(new URL('../README.md', import.meta.url), 'utf8').matchAll(
        /^\| `(\w+)` \| (?:both|server|client) \| ([^|]*) \| ([^|]*) \|/gm,
      ),
    ].map((r) => [r[1], { dflt: r[2].trim(), range: r[3].trim() }]),
  );
  /** A README quantity as a number: `1 024`, 16 MiB, 8 KiB, 2³² − 1, `0` (off). */
  const quantity = (text: string): number => {
    const t = text.replace(/`|\(off\)/g, '').trim();
    if (/^2³² − 1$/.test(t)) return 2 ** 32 - 1;
    const m = /^([\d ]+?)\s*(KiB|MiB)?$/.exec(t);
    if (m === null) throw new Error(`not a quantity: ${text}`);
    return Number(m[1].replace(/ /g, '')) * (m[2] === 'KiB' ? 1024 : m[2] === 'MiB' ? 1024 * 1024 : 1);
  };
  const rows = Object.entries(INTEGER_OPTIONS).filter(([name]) => !name.includes('.'));

  it.each(rows)('%s: the default and the range stated agree with the row', (name, row) => {
    const doc = table.get(name);
    expect(doc).toBeDefined();
    expect(quantity(doc!.dflt)).toBe(row.default);
    const between = /(2³² − 1|\d[\d ]*)\s*–\s*(2³² − 1|\d[\d ]*)/.exec(doc!.range);
    const atLeast = /≥ (\d[\d ]*)/.exec(doc!.range);
    if (between !== null) {
      expect([quantity(between[1]), quantity(between[2])]).toEqual([row.min, row.max]);
    } else if (atLeast !== null) {
      expect(quantity(atLeast[1])).toBe(row.min);
      expect(row.max).toBeGreaterThanOrEqual(2 ** 31 - 1); // no upper bound worth stating (Node's timer limit or more)
    } else if (doc!.range.includes('`0` disables') || doc!.range.includes('`0` resolves once')) {
      expect(row.min).toBe(0);
    }
  });
});
