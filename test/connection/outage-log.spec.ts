import type { Logger } from '@nestjs/common';
import { OutageLog } from '../../lib/connection/outage-log.js';
import { WireConnectionError } from '../../lib/errors.js';

function recordingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => lines.push(`${level} ${message}`);
  const logger = { warn: at('warn'), verbose: at('verbose'), log: at('log'), debug: at('debug') } as unknown as Logger;
  return { logger, lines };
}

describe('OutageLog', () => {
  const err = new WireConnectionError('socket error: connect ECONNREFUSED');

  it('counts failed attempts per endpoint and reports each recovery with its own count', () => {
    const { logger, lines } = recordingLogger();
    const log = new OutageLog(logger, 'to');
    log.failed('a:1', err, true);
    log.failed('b:2', err, false);
    log.failed('a:1', err, false);
    log.opened('b:2');
    log.failed('a:1', err, false);
    log.opened('a:1');
    log.opened('a:1'); // a second connection to a healthy endpoint: nothing to report
    expect(lines.map((l) => l.replace(/in \d+ ms/, 'in T ms'))).toEqual([
      // Nothing for the attempts after the first: they are counted for the recovery line.
      'warn connection to a:1 failed: socket error: connect ECONNREFUSED',
      'log reconnected to b:2 after 1 failed attempts in T ms',
      'log reconnected to a:1 after 3 failed attempts in T ms',
    ]);
  });

  it('logs nothing on a first connection that never failed', () => {
    const { logger, lines } = recordingLogger();
    new OutageLog(logger, 'to').opened('a:1');
    expect(lines).toEqual([]);
  });
});

describe('OutageLog bounds', () => {
  it('remembers at most 1024 failing peers, forgetting the oldest', () => {
    const lines: string[] = [];
    const logger = {
      warn: (m: string) => lines.push(`warn ${m}`),
      verbose: () => {},
      log: (m: string) => lines.push(`log ${m}`),
    };
    const log = new OutageLog(logger as unknown as Logger, 'from');
    const err = new WireConnectionError('x');
    for (let i = 0; i < 2000; i++) log.failed(`10.0.${i >> 8}.${i & 255}`, err);
    expect(lines.filter((l) => l.startsWith('warn'))).toHaveLength(2000); // each new host warns once
    lines.length = 0;
    log.opened('10.0.0.0'); // forgotten: no recovery line
    log.opened('10.0.7.207'); // host 1999, still remembered
    expect(lines).toEqual([
      expect.stringMatching(/^log connection from 10\.0\.7\.207 open again after 1 failed attempts in \d+ ms$/),
    ]);
    expect((log as unknown as { failing: Map<string, unknown> }).failing.size).toBe(1023);
  });
});
