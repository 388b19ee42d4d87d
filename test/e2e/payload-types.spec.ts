import 'reflect-metadata';
import { readFileSync, writeFileSync } from 'node:fs';
import type { AddressInfo, Server as NetServer } from 'node:net';
import { ConsoleLogger, Controller, type INestMicroservice, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Payload, Transport, type ClientProxy } from '@nestjs/microservices';
import { lastValueFrom, race, Subject, map, type Observable } from 'rxjs';
import { clientFor, startWireApp } from '../helpers/apps.js';

/**
 * README "Payload types" is generated from what this test observes: each row's value is sent
 * through a real Nest TCP microservice and real nest-wire ones (default and `payloadTypes:
 * 'native'`), in both directions (as a request the handler receives, as a response the caller
 * receives), and the table in the README must be exactly the table rendered from the results.
 * `UPDATE_README=1` rewrites it.
 */

class Point {
  constructor(
    public x: number,
    public y: number,
  ) {}
  get norm(): number {
    return Math.hypot(this.x, this.y);
  }
}

const DATE = '2026-12-01T08:00:00.000Z';

/** [JS type, the value as written in the README, the value]. */
const ROWS: Array<[string, string, () => unknown]> = [
  ['string', `'héllo'`, () => 'héllo'],
  ['number (integer)', '42', () => 42],
  ['number (integer ≥ 2³²)', '2 ** 40', () => 2 ** 40],
  ['number (integer > 2⁵³)', '2 ** 60', () => 2 ** 60],
  ['number (float)', '1.5', () => 1.5],
  ['NaN', 'NaN', () => NaN],
  ['±Infinity', '-Infinity', () => -Infinity],
  ['−0', '-0', () => -0],
  ['BigInt', '42n', () => 42n],
  ['BigInt (> 2⁵³)', '2n ** 63n', () => 2n ** 63n],
  ['BigInt (> 64 bits)', '2n ** 64n', () => 2n ** 64n],
  ['boolean', 'true', () => true],
  ['null', 'null', () => null],
  ['undefined (property)', '{ a: undefined, b: 1 }', () => ({ a: undefined, b: 1 })],
  ['undefined (array element)', '[undefined, 1]', () => [undefined, 1]],
  ['undefined (top level)', 'undefined', () => undefined],
  ['Date', `new Date('${DATE}')`, () => new Date(DATE)],
  ['invalid Date', `new Date(NaN)`, () => new Date(NaN)],
  ['object with toJSON', `{ toJSON: () => 'J' }`, () => ({ toJSON: () => 'J' })],
  ['class instance', 'new Point(3, 4)', () => new Point(3, 4)],
  ['Map', `new Map([['a', 1]])`, () => new Map([['a', 1]])],
  ['Set', 'new Set([1, 2])', () => new Set([1, 2])],
  ['Buffer', 'Buffer.from([1, 2])', () => Buffer.from([1, 2])],
  ['Uint8Array', 'new Uint8Array([1, 2])', () => new Uint8Array([1, 2])],
  ['other typed arrays', 'new Uint16Array([1, 2])', () => new Uint16Array([1, 2])],
  ['ArrayBuffer', 'new Uint8Array([1, 2]).buffer', () => new Uint8Array([1, 2]).buffer],
  ['nested arrays', '[[1, [2]], []]', () => [[1, [2]], []]],
  ['RegExp', '/a+/g', () => /a+/g],
  ['Error', `new Error('boom')`, () => new Error('boom')],
  ['Symbol', `{ s: Symbol('s') }`, () => ({ s: Symbol('s') })],
  ['function', '{ f: () => 1 }', () => ({ f: () => 1 })],
];

const NO_VALUE = Symbol('no value');
const received: unknown[] = [];

@Controller()
class ProbeController {
  /** Records what the handler received, for the request direction. */
  @MessagePattern('take')
  take(@Payload() data: unknown): boolean {
    received.push(data);
    return true;
  }

  /** Returns row `index`'s value, for the response direction. */
  @MessagePattern('give')
  give(@Payload() index: number): unknown {
    return ROWS[index][2]();
  }
}

@Module({ controllers: [ProbeController] })
class ProbeModule {}

/** Collects the errors Nest's TCP server logs (a response it cannot serialize ends up there). */
class CapturingLogger extends ConsoleLogger {
  readonly errors = new Subject<unknown>();
  override error(message: unknown): void {
    this.errors.next(message);
  }
  override log(): void {}
  override warn(): void {}
}

/** Renders a received value as a JS-like literal: what the README's cells show. */
function show(v: unknown): string {
  if (v === NO_VALUE) return '(no value)';
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'function') return Function.prototype.toString.call(v);
  if (typeof v === 'symbol') return v.toString();
  if (typeof v === 'boolean') return String(v);
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? 'Invalid Date' : `Date ${v.toISOString()}`;
  if (v instanceof Uint8Array) {
    return `${Buffer.isBuffer(v) ? 'Buffer' : 'Uint8Array'} <${[...v].map((b) => b.toString(16).padStart(2, '0')).join(' ')}>`;
  }
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  if (v instanceof Map) return `Map { ${[...v].map(([k, x]) => `${show(k)} => ${show(x)}`).join(', ')} }`;
  if (v instanceof Set) return `Set { ${[...v].map(show).join(', ')} }`;
  const ctor = v.constructor;
  const name = ctor === Object || ctor === undefined ? '' : `${ctor.name} `;
  const entries = Object.entries(v).map(([k, x]) => `${/^[a-z_$][\w$]*$/i.test(k) ? k : `'${k}'`}: ${show(x)}`);
  return `${name}${entries.length === 0 ? '{}' : `{ ${entries.join(', ')} }`}`;
}

class NoAnswer extends Error {}

function showError(err: unknown): string {
  if (err instanceof NoAnswer) return err.message;
  const e = err as { name?: string; code?: unknown; message?: string };
  if (typeof e?.code === 'string' && e.code.startsWith('WIRE_')) return `fails: ${e.name} (${e.code})`;
  return `fails: ${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`;
}

/** The one value (or none) an observable produces, or the error it fails with, rendered. */
async function outcome(call: Observable<unknown>): Promise<string> {
  try {
    return show(await lastValueFrom(call, { defaultValue: NO_VALUE }));
  } catch (err) {
    return showError(err);
  }
}

interface Side {
  name: string;
  client: ClientProxy;
  /** An error the server logs instead of answering (Nest TCP), or never. */
  serverErrors: Observable<unknown>;
}

async function observe(side: Side, index: number): Promise<string> {
  received.length = 0;
  const asRequest = await outcome(side.client.send('take', ROWS[index][2]()));
  const request = asRequest === 'true' ? show(received[0]) : asRequest;
  // A response the server cannot send: Nest TCP logs it and never answers; race the two.
  const failed = side.serverErrors.pipe(
    map((e) => {
      throw new NoAnswer(`no answer, the server logs ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
    }),
  );
  const response = await outcome(race(side.client.send('give', index), failed));
  return request === response ? request : `request: ${request}; response: ${response}`;
}

function renderTable(cells: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [
    "| JS type | value sent | Nest TCP (JSON) | nest-wire, default (`'json'`) | nest-wire, `payloadTypes: 'native'` |",
    '|---|---|---|---|---|',
  ];
  ROWS.forEach(([type, literal], i) => {
    lines.push(`| ${type} | \`${esc(literal)}\` | ${cells[i].map((c) => `\`${esc(c)}\``).join(' | ')} |`);
  });
  return lines.join('\n');
}

const BEGIN = '<!-- payload-types:begin (generated by test/e2e/payload-types.spec.ts) -->';
const END = '<!-- payload-types:end -->';

describe('README "Payload types" table (Nest TCP vs nest-wire, real apps)', () => {
  const apps: INestMicroservice[] = [];
  const sides: Side[] = [];
  /** A 'native' client of the 'json' server and a 'json' client of the 'native' one. */
  const mixed: Side[] = [];

  beforeAll(async () => {
    // nest-wire apps first: startWireApp's `logger: false` replaces Nest's global logger, and
    // the TCP app's capturing logger must be the one in place.
    const wireSides: Side[] = [];
    for (const payloadTypes of ['json', 'native'] as const) {
      const running = await startWireApp(ProbeModule, { payloadTypes });
      apps.push(running.app);
      wireSides.push({
        name: `nest-wire ${payloadTypes}`,
        client: clientFor(running, { payloadTypes }),
        serverErrors: new Subject(),
      });
      const other = payloadTypes === 'json' ? 'native' : 'json';
      mixed.push({
        name: `${other} client, ${payloadTypes} server`,
        client: clientFor(running, { payloadTypes: other }),
        serverErrors: new Subject(),
      });
    }
    const logger = new CapturingLogger();
    const tcpApp = await NestFactory.createMicroservice(ProbeModule, {
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port: 0 },
      logger,
    });
    await tcpApp.listen();
    apps.push(tcpApp);
    const tcpPort = (tcpApp.unwrap<NetServer>().address() as AddressInfo).port;
    const tcpClient = ClientProxyFactory.create({
      transport: Transport.TCP,
      options: { host: '127.0.0.1', port: tcpPort },
    });
    sides.push({ name: 'Nest TCP', client: tcpClient, serverErrors: logger.errors }, ...wireSides);
    await Promise.all([...sides, ...mixed].map((s) => s.client.connect()));
  });

  afterAll(async () => {
    for (const side of [...sides, ...mixed]) await side.client.close();
    for (const app of apps) await app.close();
  });

  it('is what the three transports really deliver', async () => {
    const cells: string[][] = [];
    for (let i = 0; i < ROWS.length; i++) {
      const row: string[] = [];
      for (const side of sides) row.push(await observe(side, i));
      cells.push(row);
    }
    const table = renderTable(cells);
    let readme = readFileSync('README.md', 'utf8');
    const begin = readme.indexOf(BEGIN);
    const end = readme.indexOf(END);
    expect(begin).toBeGreaterThan(-1);
    expect(end).toBeGreaterThan(begin);
    if (process.env.UPDATE_README === '1') {
      readme = `${readme.slice(0, begin + BEGIN.length)}\n${table}\n${readme.slice(end)}`;
      writeFileSync('README.md', readme);
    }
    expect(readme.slice(begin + BEGIN.length, readme.indexOf(END)).trim()).toBe(table);
  });

  it("delivers a Date as its ISO string over Nest TCP and nest-wire's default, as a Date with 'native'", async () => {
    // The issue's case (a DTO with @IsDateString()), checked without the renderer.
    const tcp = await observe(
      sides[0],
      ROWS.findIndex((r) => r[0] === 'Date'),
    );
    const wire = await observe(
      sides[1],
      ROWS.findIndex((r) => r[0] === 'Date'),
    );
    const native = await observe(
      sides[2],
      ROWS.findIndex((r) => r[0] === 'Date'),
    );
    expect([tcp, wire, native]).toEqual([`'${DATE}'`, `'${DATE}'`, `Date ${DATE}`]);
  });

  it('works with the two sides in different modes: each decides what it sends and what it receives', async () => {
    const [nativeToJson, jsonToNative] = mixed;
    received.length = 0;
    // The 'native' client sends a timestamp; the 'json' server's handler receives the ISO string.
    await lastValueFrom(nativeToJson.client.send('take', { at: new Date(DATE), n: 2n ** 60n }));
    expect(received[0]).toEqual({ at: DATE, n: 2 ** 60 });
    // The 'json' server answers a Date as its ISO string, whatever the client's mode.
    const date = ROWS.findIndex((r) => r[0] === 'Date');
    expect(await lastValueFrom(nativeToJson.client.send('give', date))).toBe(DATE);
    // The 'native' server sends a timestamp; the 'json' client receives the ISO string.
    expect(await lastValueFrom(jsonToNative.client.send('give', date))).toBe(DATE);
    const big = ROWS.findIndex((r) => r[0] === 'BigInt (> 2⁵³)');
    expect(await lastValueFrom(jsonToNative.client.send('give', big))).toBe(2 ** 63);
  });
});
