import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { Outcome } from '../stats/call-stats.js';
import type {
  CallKind,
  ClientCallTrace,
  InstrumentationHooks,
  PeerSocket,
  ServerCallTrace,
} from '../diagnostics/instrumentation-hooks.js';
import type { WireContext } from '../server/wire-context.js';
import {
  ATTR_ERROR_TYPE,
  ATTR_NETWORK_PEER_ADDRESS,
  ATTR_NETWORK_PEER_PORT,
  ATTR_RPC_METHOD_ORIGINAL,
  ATTR_RPC_STATUS_CODE,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  UNKNOWN_METHOD,
  callAttributes,
  recordOutcome,
  setAddress,
} from './span-attributes.js';

/** Who holds the tracer (it changes with `setTracerProvider`). */
export interface TracerSource {
  readonly tracer: Tracer;
}

/**
 * The hooks `WireInstrumentation` installs: one span per call on each side, the span
 * context carried in the call's metadata through the globally configured propagator
 * (W3C `traceparent` / `tracestate` with the SDK's defaults).
 *
 * Kinds: a request is CLIENT → SERVER; an event (fire and forget, nobody answers) is
 * PRODUCER → CONSUMER, as the messaging conventions have it.
 */
export class SpanHooks implements InstrumentationHooks {
  constructor(private readonly source: TracerSource) {}

  startClientCall(kind: CallKind, pattern: string, metadata: Record<string, string> | undefined): ClientCallTrace {
    const parent = context.active();
    const span = this.source.tracer.startSpan(
      pattern,
      { kind: kind === 'request' ? SpanKind.CLIENT : SpanKind.PRODUCER, attributes: callAttributes(pattern) },
      parent,
    );
    // A copy: the metadata may be the caller's own object (per-call options, dispatch hook).
    const carrier: Record<string, string> = metadata === undefined ? {} : { ...metadata };
    propagation.inject(trace.setSpan(parent, span), carrier);
    return new ClientSpan(span, metadata === undefined && isEmpty(carrier) ? undefined : carrier);
  }

  startServerCall(kind: CallKind, ctx: WireContext): ServerCallTrace {
    const pattern = ctx.getPattern();
    const parent = remoteParent(ctx.getMetadata());
    const span = this.source.tracer.startSpan(
      pattern,
      { kind: kind === 'request' ? SpanKind.SERVER : SpanKind.CONSUMER, attributes: callAttributes(pattern) },
      parent,
    );
    setAddress(span, ATTR_NETWORK_PEER_ADDRESS, ATTR_NETWORK_PEER_PORT, ctx.getRemoteAddress());
    return new ServerSpan(span, trace.setSpan(parent, span));
  }

  recordUnhandled(
    pattern: string,
    metadata: Record<string, string> | undefined,
    remoteAddress: string,
    code: string,
    message: string,
  ): void {
    // The pattern came from the network and matches nothing: it is not a span name (unbounded cardinality).
    const span = this.source.tracer.startSpan(
      UNKNOWN_METHOD,
      { kind: SpanKind.SERVER, attributes: { ...callAttributes(UNKNOWN_METHOD), [ATTR_RPC_METHOD_ORIGINAL]: pattern } },
      remoteParent(metadata),
    );
    setAddress(span, ATTR_NETWORK_PEER_ADDRESS, ATTR_NETWORK_PEER_PORT, remoteAddress);
    span.setAttribute(ATTR_RPC_STATUS_CODE, code);
    span.setAttribute(ATTR_ERROR_TYPE, code);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
    span.end();
  }
}

/** The caller's span context from the request metadata; a new trace if it carries none. */
function remoteParent(metadata: Record<string, string> | undefined): Context {
  // ROOT_CONTEXT, not context.active(): whatever is active while a socket is read belongs to no call.
  return metadata === undefined ? ROOT_CONTEXT : propagation.extract(ROOT_CONTEXT, metadata);
}

function isEmpty(record: Record<string, string>): boolean {
  for (const _ in record) return false;
  return true;
}

class ClientSpan implements ClientCallTrace {
  constructor(
    private readonly span: Span,
    readonly metadata: Record<string, string> | undefined,
  ) {}

  written(endpoint: string, socket: PeerSocket): void {
    setAddress(this.span, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, endpoint);
    // Unset for a Unix socket: it has no peer address.
    if (socket.remoteAddress !== undefined) this.span.setAttribute(ATTR_NETWORK_PEER_ADDRESS, socket.remoteAddress);
    if (socket.remotePort !== undefined) this.span.setAttribute(ATTR_NETWORK_PEER_PORT, socket.remotePort);
  }

  end(outcome: Outcome): void {
    recordOutcome(this.span, outcome);
    this.span.end();
  }
}

class ServerSpan implements ServerCallTrace {
  constructor(
    private readonly span: Span,
    /** The caller's context with this span active: what the handler runs in. */
    private readonly active: Context,
  ) {}

  run<T>(fn: () => T): T {
    return context.with(this.active, fn);
  }

  end(outcome: Outcome): void {
    recordOutcome(this.span, outcome);
    this.span.end();
  }
}
