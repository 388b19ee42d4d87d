import { toArray, firstValueFrom, take } from 'rxjs';
import { WireCancelledError, WireError } from '../../lib/index.js';
import { REQUEST_STREAM_WINDOW, RequestPayload, type PayloadControl } from '../../lib/server/request-payload.js';

function recording(): { ctl: PayloadControl; grants: number[]; released: () => number } {
  const grants: number[] = [];
  let released = 0;
  return {
    ctl: { grant: (n) => void grants.push(n), released: (bytes) => void (released += bytes) },
    grants,
    released: () => released,
  };
}

describe('RequestPayload (the handler side of a request stream)', () => {
  it('grants nothing until the handler consumes; then the window, and 8 more per 8 consumed', async () => {
    const r = recording();
    const payload = new RequestPayload<number>(r.ctl);
    expect(r.grants).toEqual([]);
    const iterator = payload[Symbol.asyncIterator]();
    const first = iterator.next();
    expect(r.grants).toEqual([REQUEST_STREAM_WINDOW]);
    for (let i = 0; i < REQUEST_STREAM_WINDOW; i++) expect(payload.push(i, 10)).toBe(true);
    // A value beyond the credit is refused (the session fails the call).
    expect(payload.push(99, 10)).toBe(false);
    expect(await first).toEqual({ value: 0, done: false });
    for (let i = 1; i < 8; i++) expect((await iterator.next()).value).toBe(i);
    expect(r.grants).toEqual([REQUEST_STREAM_WINDOW, 8]);
    expect(r.released()).toBe(80);
    // The renewed credit is usable.
    expect(payload.push(16, 10)).toBe(true);
  });

  it('as an Observable: values are delivered as they arrive, completion after them', async () => {
    const r = recording();
    const payload = new RequestPayload<number>(r.ctl);
    const all = firstValueFrom(payload.pipe(toArray()));
    expect(r.grants).toEqual([REQUEST_STREAM_WINDOW]);
    payload.push(1, 0);
    payload.push(2, 0);
    payload.end();
    await expect(all).resolves.toEqual([1, 2]);
  });

  it('values queued before the first subscriber are delivered to it, in order', async () => {
    const r = recording();
    const payload = new RequestPayload<number>(r.ctl);
    const iterator = payload[Symbol.asyncIterator]();
    void iterator.next(); // starts it (grant), takes the first value
    payload.push(1, 0);
    payload.push(2, 0);
    payload.push(3, 0);
    payload.end();
    expect((await iterator.next()).value).toBe(2);
    expect((await iterator.next()).value).toBe(3);
    expect((await iterator.next()).done).toBe(true);
  });

  it('fail(): a waiting next() rejects with the error, queued values are dropped and released', async () => {
    const r = recording();
    const payload = new RequestPayload<number>(r.ctl);
    const iterator = payload[Symbol.asyncIterator]();
    await Promise.resolve();
    const pending = iterator.next();
    payload.push(1, 5); // goes to the waiting next()
    await pending;
    payload.push(2, 7); // queued
    const err = new WireCancelledError('call cancelled by the client');
    payload.fail(err);
    expect(r.released()).toBe(12);
    await expect(iterator.next()).rejects.toBe(err);
    expect(payload.isReading).toBe(false);
  });

  it('the handler leaving its for-await loop stops reading: later values are dropped and released', async () => {
    const r = recording();
    const payload = new RequestPayload<number>(r.ctl);
    const iterator = payload[Symbol.asyncIterator]();
    const first = iterator.next();
    payload.push(1, 3);
    await first;
    await iterator.return!();
    expect(payload.isReading).toBe(false);
    expect(payload.push(2, 4)).toBe(true); // within the credit: accepted, dropped
    expect(r.released()).toBe(7);
    expect(r.grants).toEqual([REQUEST_STREAM_WINDOW]);
  });

  it('unsubscribing (take) stops reading too', async () => {
    const r = recording();
    const payload = new RequestPayload<number>(r.ctl);
    const first = firstValueFrom(payload.pipe(take(1)));
    payload.push(1, 0);
    await expect(first).resolves.toBe(1);
    expect(payload.isReading).toBe(false);
  });

  it('close() (the call ended): a consumer still waiting sees completion', async () => {
    const payload = new RequestPayload<number>(recording().ctl);
    const iterator = payload[Symbol.asyncIterator]();
    const pending = iterator.next();
    payload.close();
    await expect(pending).resolves.toEqual({ value: undefined, done: true });
  });

  it('can be consumed once: a second subscriber or iterator errors with WireError', async () => {
    const payload = new RequestPayload<number>(recording().ctl);
    payload.subscribe({ error: () => {} });
    await expect(firstValueFrom(payload)).rejects.toBeInstanceOf(WireError);
    await expect(payload[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(WireError);
  });
});
