import { WireClient, WireOptionsError, WireServer } from '../lib/index.js';
import { formatAddress } from '../lib/client/endpoint-address.js';
import { resolveClientOptions } from '../lib/options.js';

/**
 * What each invalid value says (house rule: the option's name and its valid range, or the
 * accepted forms, and the value given). test/options.spec.ts covers unknown keys.
 */

const T = 2 ** 31 - 1; // Node's timer limit
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function refusal(make: () => { close(): unknown }): string {
  let made: { close(): unknown } | undefined;
  try {
    made = make();
  } catch (err) {
    expect(err).toBeInstanceOf(WireOptionsError);
    expect((err as WireOptionsError).code).toBe('WIRE_OPTIONS');
    return (err as Error).message;
  }
  void made.close();
  throw new Error('expected a WireOptionsError, nothing was thrown');
}

const server = (options: object) => new WireServer(options);
const client = (options: object) => new WireClient(options);
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** [option, min, max] of every integer option, per side. */
const SERVER_INTEGERS: [string, number, number][] = [
  ['port', 0, 65535],
  ['maxFrameSize', 1024, 0xffffffff],
  ['handshakeTimeoutMs', 1, T],
  ['heartbeatIntervalMs', 0, T],
  ['drainTimeoutMs', 0, T],
  ['maxPatternBytes', 1, 0xffff],
  ['maxMetadataEntries', 0, MAX_SAFE],
  ['maxMetadataBytes', 0, 0xffffffff],
  ['maxConnections', 1, MAX_SAFE],
  ['idleTimeoutMs', 0, T],
  ['maxInFlightPerConnection', 1, 0xffffffff],
  ['maxStreamBufferValues', 1, MAX_SAFE],
  ['maxQueuedBytes', 1024, MAX_SAFE],
];
const CLIENT_INTEGERS: [string, number, number][] = [
  ['port', 0, 65535],
  ['maxFrameSize', 1024, 0xffffffff],
  ['handshakeTimeoutMs', 1, T],
  ['heartbeatIntervalMs', 0, T],
  ['resolveIntervalMs', 0, T],
  ['nackRetries', 0, 100],
  ['timeout', 0, T],
  ['poolSize', 1, 1024],
  ['connectTimeoutMs', 1, T],
  ['maxPendingCalls', 1, MAX_SAFE],
  ['maxQueuedBytes', 1024, MAX_SAFE],
  ['streamCredit', 1, 65_536],
];

describe.each([
  ['WireServer', server, SERVER_INTEGERS],
  ['WireClient', client, CLIENT_INTEGERS],
] as const)('%s integer options', (side, make, table) => {
  it.each(table)(
    '%s: refuses values outside %d..%d and non-integers, naming the option, the range and the value',
    (name, min, max) => {
      // (null and undefined mean "the default", as with `??`.)
      const bad: unknown[] = [min - 1, max + 1, 1.5, '10', Number.NaN];
      for (const value of bad) {
        const message = refusal(() => make({ [name]: value }));
        expect(message).toMatch(new RegExp(`^${side}\\b.*\\boption ${name}\\b`));
        expect(message).toContain(`from ${min} to ${max}`);
        expect(message).toMatch(new RegExp(`got ${escape(String(value))}$`));
      }
    },
  );

  it.each(table)('%s: accepts both ends of its range', (name, min, max) => {
    for (const value of [min, max]) void make({ [name]: value }).close();
  });
});

describe('time options say their unit and that 0 disables', () => {
  it.each([
    ['WireServer', server, 'drainTimeoutMs'],
    ['WireServer', server, 'idleTimeoutMs'],
    ['WireServer', server, 'heartbeatIntervalMs'],
    ['WireClient', client, 'timeout'],
    ['WireClient', client, 'resolveIntervalMs'],
  ] as const)('%s %s', (_side, make, name) => {
    expect(refusal(() => make({ [name]: -1 }))).toContain(`option ${name} (ms, 0 disables)`);
  });

  it('maxFrameSize says it is in bytes', () => {
    expect(refusal(() => client({ maxFrameSize: 10 }))).toContain('option maxFrameSize (bytes)');
  });
});

describe('other option types', () => {
  it('host: a non-empty string', () => {
    for (const make of [server, client]) {
      expect(refusal(() => make({ host: '' }))).toMatch(/option host must be a non-empty string, got $/);
      expect(refusal(() => make({ host: 42 }))).toMatch(/option host must be a non-empty string, got 42$/);
    }
  });

  it('path: a non-empty string (a Unix socket path)', () => {
    expect(refusal(() => server({ path: '' }))).toMatch(
      /^WireServer option path must be a non-empty string \(a Unix socket path\)$/,
    );
    expect(refusal(() => client({ path: 7 }))).toMatch(/^WireClient option path must be a non-empty string/);
  });

  it('codec: must implement encode and decode', () => {
    expect(refusal(() => server({ codec: { encode: () => new Uint8Array() } }))).toBe(
      'WireServer option codec must implement encode(value) and decode(bytes)',
    );
  });

  it('tls: an object of Node tls options', () => {
    expect(refusal(() => server({ tls: 'yes' }))).toBe(
      'WireServer option tls must be an object of Node tls options, got string',
    );
    expect(refusal(() => client({ tls: true }))).toBe(
      'WireClient option tls must be an object of Node tls options, got boolean',
    );
  });

  it('authenticate: a function', () => {
    expect(refusal(() => server({ authenticate: 'token' }))).toBe(
      'WireServer option authenticate must be a function, got string',
    );
  });

  it("overflow: 'fail' or 'wait'", () => {
    expect(refusal(() => client({ overflow: 'drop' }))).toBe(
      "WireClient option overflow must be one of 'fail', 'wait', got drop",
    );
  });

  it('propagate: true or false', () => {
    expect(refusal(() => client({ propagate: 'yes' }))).toBe(
      'WireClient option propagate must be true or false, got yes',
    );
  });

  it("compression.algorithm: 'deflate' or 'brotli'; thresholdBytes: an integer ≥ 0", () => {
    expect(refusal(() => client({ compression: { algorithm: 'zstd' } }))).toBe(
      "WireClient option compression.algorithm must be one of 'deflate', 'brotli', got zstd",
    );
    expect(refusal(() => server({ compression: { algorithm: 'deflate', thresholdBytes: -1 } }))).toMatch(
      /^WireServer option compression\.thresholdBytes must be an integer from 0 to \d+, got -1$/,
    );
  });

  it('reconnect: initialDelayMs from 1, maxDelayMs at least initialDelayMs', () => {
    expect(refusal(() => client({ reconnect: { initialDelayMs: 0 } }))).toBe(
      `WireClient option reconnect.initialDelayMs must be an integer from 1 to ${T}, got 0`,
    );
    expect(refusal(() => client({ reconnect: { initialDelayMs: 500, maxDelayMs: 100 } }))).toBe(
      `WireClient option reconnect.maxDelayMs (at least initialDelayMs) must be an integer from 500 to ${T}, got 100`,
    );
    // Without maxDelayMs, the default cap rises to initialDelayMs rather than refusing it.
    expect(resolveClientOptions({ reconnect: { initialDelayMs: 8000 } }).reconnect).toEqual({
      initialDelayMs: 8000,
      maxDelayMs: 8000,
    });
  });

  it('a non-object options argument', () => {
    expect(refusal(() => new WireClient(5 as never))).toMatch(
      /^WireClient expects an options object, got number$|^WireClient/,
    );
  });
});

describe('servers and endpoint parsing', () => {
  const servers = (list: unknown) => resolveClientOptions({ servers: list as never }).servers;

  it("parses 'host:port', '[ipv6]:port', { host, port } and { path }", () => {
    expect(
      servers(['10.0.0.1:4000', 'svc.local:1', '[::1]:65535', { host: 'h', port: 80 }, { path: '/tmp/x.sock' }]),
    ).toEqual([
      { host: '10.0.0.1', port: 4000 },
      { host: 'svc.local', port: 1 },
      { host: '::1', port: 65535 },
      { host: 'h', port: 80 },
      { path: '/tmp/x.sock' },
    ]);
  });

  it('formats addresses back as keys: host:port, [v6]:port, unix:path', () => {
    expect(formatAddress({ host: '10.0.0.1', port: 4000 })).toBe('10.0.0.1:4000');
    expect(formatAddress({ host: '::1', port: 4000 })).toBe('[::1]:4000');
    expect(formatAddress({ path: '/tmp/x.sock' })).toBe('unix:/tmp/x.sock');
    for (const s of ['10.0.0.1:4000', '[::1]:4000']) expect(formatAddress(servers([s])[0])).toBe(s);
  });

  it('refuses strings without a port, bare IPv6 and ports out of range, naming the entry', () => {
    for (const bad of ['localhost', 'localhost:', '::1:4000', 'host:port', ':4000']) {
      expect(refusal(() => client({ servers: ['ok:1', bad] }))).toBe(
        `WireClient option servers[1] must look like 'host:port' or '[ipv6]:port', got '${bad}'`,
      );
    }
    expect(refusal(() => client({ servers: ['h:0'] }))).toBe(
      'WireClient option servers[0] port must be an integer from 1 to 65535, got 0',
    );
    expect(refusal(() => client({ servers: ['h:65536'] }))).toMatch(
      /servers\[0\] port must be an integer from 1 to 65535, got 65536$/,
    );
    expect(refusal(() => client({ servers: [{ host: 'h', port: 70000 }] }))).toMatch(/servers\[0\] port .* got 70000$/);
  });

  it('refuses objects of neither form, and an empty or non-array list', () => {
    expect(refusal(() => client({ servers: [{ host: '' }] }))).toBe(
      `WireClient option servers[0] must be 'host:port', { host, port } or { path }, got {"host":""}`,
    );
    expect(refusal(() => client({ servers: [42] }))).toBe(
      "WireClient option servers[0] must be 'host:port', { host, port } or { path }, got 42",
    );
    for (const list of [[], 'h:1']) {
      expect(refusal(() => client({ servers: list }))).toBe(
        "WireClient option servers must be a non-empty array of 'host:port', { host, port } or { path }",
      );
    }
  });

  it('refuses servers together with host, port or path', () => {
    for (const extra of [{ host: 'h' }, { port: 1 }, { path: '/p' }]) {
      expect(refusal(() => client({ servers: ['h:1'], ...extra }))).toBe(
        'WireClient: give either servers or host/port/path, not both',
      );
    }
  });
});
