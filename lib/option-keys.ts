import { WireOptionsError } from './errors.js';

/**
 * The keys an options object may have: one `true` per option. The lists themselves live next
 * to the option interfaces in options.ts; this file only checks objects against them.
 */
export type OptionKeys<T> = { readonly [K in keyof Required<T>]: true };

/**
 * Keys people bring from Nest's TCP transport (or from a `ClientsModule` entry) that nest-wire
 * names differently or does not have. A misspelt option is never ignored: an accepted
 * `tlsOptions` would run the connection in plaintext.
 */
const MIGRATION_HINTS: Readonly<Record<string, { use?: string; why: string }>> = {
  tlsOptions: { use: 'tls', why: "Nest TCP's tlsOptions is called tls here: the same Node TLS options" },
  maxBufferSize: {
    use: 'maxFrameSize',
    why: 'the largest frame accepted, in bytes (not characters), announced to the peer',
  },
  maxSendBufferSize: { use: 'maxQueuedBytes', why: 'bytes queued for a socket that does not drain' },
  incompleteMessageTimeout: {
    use: 'heartbeatIntervalMs',
    why: 'silent peers are found by heartbeats (heartbeatIntervalMs) and slow handshakes by handshakeTimeoutMs',
  },
  retryAttempts: {
    use: 'reconnect',
    why: 'a WireServer does not listen again after an error (a listen error fails app.listen()); a WireClient redials by itself with the reconnect backoff',
  },
  retryDelay: {
    use: 'reconnect',
    why: 'a WireServer does not listen again after an error; a WireClient redials by itself with the reconnect backoff',
  },
  socketClass: { why: 'nest-wire owns its framing: there is no socket class to plug in' },
  serializer: {
    why:
      "Nest's serializer produces the whole JSON packet ({ id, pattern, data }) for a JSON socket; nest-wire's frames " +
      'carry id, pattern, metadata and payload in fixed binary fields, so there is no packet for it to produce. ' +
      'Change the payload encoding with codec (on both sides), map values in an interceptor, or override ' +
      'serializeResponse / serializeError in a WireClient subclass',
  },
  deserializer: {
    why:
      "Nest's deserializer rebuilds a packet from a parsed JSON message; nest-wire decodes binary frames itself and " +
      'only the payload goes through the codec. Change the payload encoding with codec (on both sides), map values in ' +
      'an interceptor or a pipe, or override serializeResponse / serializeError in a WireClient subclass',
  },
  url: { use: 'servers', why: "give host and port (or servers: ['host:port', ...]), not a URL" },
  urls: { use: 'servers', why: "give servers: ['host:port', ...], not URLs" },
  transport: {
    why: 'transport belongs in the ClientsModule / ClientProxyFactory entry, not in options; with customClass: WireClient it is not needed',
  },
  customClass: {
    why: 'customClass belongs in the ClientsModule / ClientProxyFactory entry, next to options, not inside it',
  },
  name: { why: 'name belongs in the ClientsModule entry, next to customClass and options, not inside options' },
  // Removed from nest-wire itself, not from Nest's TCP transport.
  maxStreamBufferBytes: {
    use: 'maxStreamBufferValues',
    why:
      'maxStreamBufferBytes was removed: stream values beyond the credit are now held unencoded and encoded when ' +
      'sent, so what bounds them is a count of values per connection (maxStreamBufferValues, a server option)',
  },
};

/**
 * Refuses every key of `options` that `known` does not list, present with any value (a
 * `tlsOptions: undefined` in a dev config is a `tlsOptions: {...}` in production). Not for
 * the hot path: it builds a message only when it throws, but it walks every key.
 */
export function checkOptionKeys(options: unknown, known: object, where: string): void {
  if (options === null || typeof options !== 'object') return;
  for (const key in options) {
    if (!Object.hasOwn(known, key)) throw unknownOptionError(key, known, where);
  }
}

/** The error for an unknown `key`: the closest valid option, a migration hint, or the valid list. */
export function unknownOptionError(key: string, known: object, where: string): WireOptionsError {
  const valid = Object.keys(known);
  const hint = Object.hasOwn(MIGRATION_HINTS, key) ? MIGRATION_HINTS[key] : undefined;
  // A hint without a replacement explains itself; anything else gets a name to try.
  const suggestion =
    hint === undefined ? closestKey(key, valid) : hint.use !== undefined && valid.includes(hint.use) ? hint.use : null;
  let message = `${where}: unknown option '${key}'`;
  if (suggestion !== null) message += `; did you mean '${suggestion}'?`;
  if (hint !== undefined) message += ` (${hint.why})`;
  else if (suggestion === null) message += `. Valid options: ${valid.join(', ')}`;
  return new WireOptionsError(message);
}

/**
 * The valid key a typo most likely meant: the same name but for case, one that is a prefix
 * of the other (`timeoutMs` / `timeout`, `heartbeatInterval` / `heartbeatIntervalMs`), or the
 * smallest edit distance within a third of the name's length. Null when nothing is close.
 */
export function closestKey(key: string, valid: readonly string[]): string | null {
  const wanted = key.toLowerCase();
  let best: string | null = null;
  let bestDistance = Math.max(1, Math.floor(wanted.length / 3));
  for (const candidate of valid) {
    const c = candidate.toLowerCase();
    if (c === wanted) return candidate;
    if (Math.min(c.length, wanted.length) >= 3 && (c.startsWith(wanted) || wanted.startsWith(c))) {
      if (best === null || bestDistance > 0) {
        best = candidate;
        bestDistance = 0;
      }
      continue;
    }
    const d = editDistance(wanted, c);
    if (d < bestDistance || (d === bestDistance && best === null)) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance, two rows. */
function editDistance(a: string, b: string): number {
  let prev = new Array<number>(b.length + 1);
  let row = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    [prev, row] = [row, prev];
  }
  return prev[b.length];
}
