import { WireProtocolError } from '../../lib/errors.js';
import { CallBody, readCallBody, TRUNCATED_FIELDS } from '../../lib/protocol/call-body.js';
import { FrameType, REQUEST_HAS_CREDIT, REQUEST_HAS_DEADLINE, REQUEST_HAS_METADATA } from '../../lib/protocol/frame.js';

describe('readCallBody', () => {
  const out = new CallBody();

  it('reads every field', () => {
    const body = Buffer.from([0, 0, 1, 0, 0, 2, 0x61, 0x62, 0, 0, 0, 1, 0x80, 0xc3]);
    readCallBody(body, REQUEST_HAS_DEADLINE | REQUEST_HAS_METADATA, out);
    expect(out.budgetMs).toBe(256);
    expect(out.pattern).toBe('ab');
    expect(out.metadata).toEqual(Buffer.from([0x80]));
    expect(out.payload).toEqual(Buffer.from([0xc3]));
  });

  it.each([
    ['deadline', Buffer.from([0, 0]), REQUEST_HAS_DEADLINE],
    ['pattern length', Buffer.from([0]), 0],
    ['pattern', Buffer.from([0, 9, 0x61]), 0],
    ['metadata length', Buffer.from([0, 1, 0x61, 0, 0]), REQUEST_HAS_METADATA],
    ['metadata', Buffer.from([0, 1, 0x61, 0, 0, 0, 9, 1]), REQUEST_HAS_METADATA],
    ['payload', Buffer.from([0, 1, 0x61]), 0],
  ])('refuses a body truncated in its %s', (field, body, flags) => {
    expect(() => readCallBody(body, flags, out)).toThrow(WireProtocolError);
    expect(() => readCallBody(body, flags, out)).toThrow(field);
  });

  it('names exactly the fields docs/PROTOCOL.md §2.2 lists, in the documented message', () => {
    const bodies: [Buffer, number][] = [
      [Buffer.from([0, 0]), REQUEST_HAS_DEADLINE],
      [Buffer.from([0]), REQUEST_HAS_CREDIT],
      [Buffer.from([0]), 0],
      [Buffer.from([0, 9, 0x61]), 0],
      [Buffer.from([0, 1, 0x61, 0, 0]), REQUEST_HAS_METADATA],
      [Buffer.from([0, 1, 0x61, 0, 0, 0, 9, 1]), REQUEST_HAS_METADATA],
      [Buffer.from([0, 1, 0x61]), 0],
    ];
    const messages = bodies.map(([body, flags]) => {
      try {
        readCallBody(body, flags, out);
      } catch (err) {
        return (err as Error).message;
      }
      return 'no error';
    });
    expect(messages).toEqual(TRUNCATED_FIELDS.map((f) => `call frame truncated: ${f} runs past the end of the frame`));
  });

  it('refuses a credit of 0 on a REQUEST only; on an EVENT it is parsed and ignored', () => {
    const body = Buffer.from([0, 0, 0, 0, 0, 1, 0x61, 0xc3]);
    expect(() => readCallBody(body, REQUEST_HAS_CREDIT, out)).toThrow('initial stream credit must be at least 1');
    readCallBody(body, REQUEST_HAS_CREDIT, out, FrameType.EVENT);
    expect(out.pattern).toBe('a');
    expect(out.payload).toEqual(Buffer.from([0xc3]));
  });

  it('reads each pattern right when frames with the same and other patterns follow one another (one reused body)', () => {
    const body = new CallBody();
    const frame = (pattern: Buffer) => Buffer.concat([Buffer.from([0, pattern.length]), pattern, Buffer.from([0xc3])]);
    const long = Buffer.from('p'.repeat(100));
    const patterns = [
      Buffer.from('echo'),
      Buffer.from('echo'),
      Buffer.from('ecHo'), // same length, other bytes
      Buffer.from('echo'),
      Buffer.from(''),
      Buffer.from([0x65, 0xff]), // invalid UTF-8: replaced, as Buffer#toString does
      Buffer.from([0x65, 0xff]),
      long, // longer than what is remembered
      long,
      Buffer.from(''),
      Buffer.from('{"cmd":"sum"}'),
    ];
    for (const pattern of patterns) {
      const bytes = frame(pattern);
      readCallBody(bytes, 0, body);
      expect(body.pattern).toBe(pattern.toString('utf8'));
      expect(body.patternBytes).toBe(pattern.length);
      bytes.fill(0); // the read buffer is reused: nothing may still point into it
      expect(body.pattern).toBe(pattern.toString('utf8'));
    }
  });
});
