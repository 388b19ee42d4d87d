import { WireProtocolError } from '../../lib/errors.js';
import { CallBody, readCallBody } from '../../lib/protocol/call-body.js';
import { REQUEST_HAS_DEADLINE, REQUEST_HAS_METADATA } from '../../lib/protocol/frame.js';

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
});
