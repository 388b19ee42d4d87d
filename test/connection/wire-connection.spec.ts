import { ClientWireConnection, type ClientWireHandler } from '../../lib/connection/client-wire-connection.js';
import { ConnectionState, type ConnectionOptions } from '../../lib/connection/connection.js';
import { ServerWireConnection, type ServerWireHandler } from '../../lib/connection/server-wire-connection.js';
import { CallBody } from '../../lib/protocol/call-body.js';
import { MsgpackCodec } from '../../lib/protocol/codec.js';
import { WireConnectionError, WireDrainingError, WireError, WireLimitError } from '../../lib/errors.js';
import { socketPair } from '../helpers/socket-pair.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The connection seam on its own: a ClientWireConnection and a ServerWireConnection over a
 * loopback socket pair, their owners replaced by handlers that record what they are told.
 */

const codec = new MsgpackCodec();
const options: ConnectionOptions = { codec, maxFrameSize: 1 << 20, handshakeTimeoutMs: 5000 };

type Event = [string, ...unknown[]];

function clientHandler() {
  const events: Event[] = [];
  const calls = new Set<number>();
  const handler: ClientWireHandler = {
    activeCalls: 0,
    onOpen: () => void events.push(['open']),
    onClose: (err) => void events.push(['close', err]),
    hasCall: (id) => calls.has(id),
    onValue: (id, hasValue, value, end) => void events.push(['value', id, hasValue, value, end]),
    onCallError: (id, err) => void events.push(['error', id, err]),
    onCallBroken: (id, err) => void events.push(['broken', id, err]),
    onNack: (id, err) => void events.push(['nack', id, err]),
    onGoAway: () => void events.push(['goaway']),
  };
  return { handler, events, calls };
}

function serverHandler() {
  const events: Event[] = [];
  const handler: ServerWireHandler = {
    activeCalls: 0,
    onOpen: () => void events.push(['open']),
    onClose: (err) => void events.push(['close', err]),
    onRequest: (id, flags, body) => void events.push(['request', id, flags, Buffer.from(body)]),
    onEvent: (id) => void events.push(['event', id]),
    onCancel: (id) => void events.push(['cancel', id]),
    onCredit: (id, n) => void events.push(['credit', id, n]),
  };
  return { handler, events };
}

async function connected() {
  const pair = await socketPair();
  const c = clientHandler();
  const s = serverHandler();
  const client = new ClientWireConnection(pair.a, options, c.handler);
  const server = new ServerWireConnection(pair.b, options, s.handler);
  await waitFor(() => client.isOpen && server.isOpen, { what: 'the handshake' });
  return { pair, client, server, c, s };
}

function named(events: Event[], name: string): Event[] {
  return events.filter((e) => e[0] === name);
}

describe('the connection seam (ClientWireConnection ↔ ServerWireConnection)', () => {
  it('opens both sides once; a request reaches the server with its body; value + END in one turn arrive as one last value', async () => {
    const { pair, client, server, c, s } = await connected();
    expect(named(c.events, 'open')).toHaveLength(1);
    expect(named(s.events, 'open')).toHaveLength(1);
    expect(client.state).toBe(ConnectionState.OPEN);

    c.calls.add(1);
    client.sendRequest(1, 'sum', 1000, [1, 2], { trace: 'x' }, 16);
    await waitFor(() => named(s.events, 'request').length === 1, { what: 'the REQUEST' });
    const [, id, flags, frameBody] = named(s.events, 'request')[0] as [string, number, number, Buffer];
    expect(id).toBe(1);
    const body = new CallBody();
    server.readCallBody(frameBody, flags, body);
    expect(body).toMatchObject({ pattern: 'sum', budgetMs: 1000, credit: 16 });
    expect(server.decodePayload(flags, body.payload)).toEqual([1, 2]);
    expect(server.decode(body.metadata!)).toEqual({ trace: 'x' });

    // `of(3)`: the value, then the completion in the same turn — END folds into the value's frame.
    server.sendValue(1, server.encodeValue(3));
    server.sendEnd(1);
    await waitFor(() => named(c.events, 'value').length > 0, { what: 'the answer' });
    // A later round trip on the same connection is an ordering barrier: nothing else was coming.
    await client.ping();
    expect(named(c.events, 'value')).toEqual([['value', 1, true, 3, true]]);
    await pair.close();
  });

  it('errors keep their class across the wire; a NACK names the reason; answers to unknown ids are dropped undecoded', async () => {
    const { pair, client, server, c } = await connected();
    c.calls.add(1).add(2).add(3);
    server.sendFailure(1, { status: 'error', message: 'bad input' });
    server.sendFailure(2, new WireLimitError('too much'));
    server.sendNack(3, new WireDrainingError());
    server.sendValue(99, server.encodeValue('nobody asked'));
    server.sendEnd(99);
    await waitFor(() => c.events.length >= 4, { what: 'the answers' });
    await client.ping();
    expect(named(c.events, 'error')[0]).toEqual(['error', 1, { status: 'error', message: 'bad input' }]);
    const limit = named(c.events, 'error')[1][2] as WireError;
    expect(limit).toBeInstanceOf(WireLimitError);
    expect(limit.message).toBe('too much');
    expect(named(c.events, 'nack')[0][2]).toBeInstanceOf(WireDrainingError);
    expect(named(c.events, 'value')).toEqual([]);
    await pair.close();
  });

  it('GOAWAY drain: both sides wait for their calls; the server closes once idle and answered, orderly, each side notified once', async () => {
    const { pair, client, server, c, s } = await connected();
    (c.handler as { activeCalls: number }).activeCalls = 1;
    (s.handler as { activeCalls: number }).activeCalls = 1;
    server.drain();
    expect(server.state).toBe(ConnectionState.DRAINING);
    expect(server.acceptsCalls).toBe(false);
    await waitFor(() => named(c.events, 'goaway').length === 1, { what: 'the GOAWAY' });
    expect(client.state).toBe(ConnectionState.DRAINING);
    expect(client.acceptsCalls).toBe(false);
    // Barrier: the client's answering GOAWAY was sent before this PING, so the server has read it.
    await client.ping();
    expect(server.isOpen && client.isOpen).toBe(true);
    // The server's call ends: answered and idle, it ends; the client follows the FIN.
    (s.handler as { activeCalls: number }).activeCalls = 0;
    server.callEnded();
    await waitFor(() => server.state === ConnectionState.CLOSED && client.state === ConnectionState.CLOSED, {
      what: 'both sockets to close',
    });
    expect(named(c.events, 'goaway')).toHaveLength(1);
    expect(named(c.events, 'close')).toEqual([['close', null]]);
    expect(named(s.events, 'close')).toEqual([['close', null]]);
    await pair.close();
  });

  it('a client that drains with no call running says GOAWAY and ends at once (it needs no answer)', async () => {
    const { pair, client, server, s } = await connected();
    client.drain();
    expect(client.state).toBe(ConnectionState.CLOSING);
    // The server drains too (the client's GOAWAY means no REQUEST follows) and closes: nothing runs.
    await waitFor(() => server.state === ConnectionState.CLOSED, { what: 'the server to close' });
    expect(named(s.events, 'close')).toEqual([['close', null]]);
    await pair.close();
  });

  it('onClose comes once, when the connection leaves the live states; a round-trip ping in flight is rejected', async () => {
    const { pair, client, server, c, s } = await connected();
    // Reading stopped on the server: the PING stays unanswered until the connection closes (and the
    // client's FIN unread: the server's socket closes after the 1 s linger).
    server.stopReadingForCalls();
    const pong = client.ping();
    server.end();
    expect(server.state).toBe(ConnectionState.CLOSING);
    expect(named(s.events, 'close')).toHaveLength(1);
    await expect(pong).rejects.toBeInstanceOf(WireConnectionError);
    await waitFor(() => server.state === ConnectionState.CLOSED, { what: 'the server socket to close' });
    expect(named(s.events, 'close')).toHaveLength(1);
    expect(named(c.events, 'close')).toHaveLength(1);
    // Verbs on a closed connection queue nothing and throw nothing.
    server.sendValue(1, server.encodeValue(1));
    client.cancel(1);
    expect(() => client.sendRequest(2, 'x', 0, 1, undefined, 0)).toThrow(WireConnectionError);
    await pair.close();
  });
});
