import 'reflect-metadata';
import { Catch, Controller, Module, UseFilters, type RpcExceptionFilter } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { throwError, type Observable } from 'rxjs';
import {
  WireClient,
  WireContext,
  WireOverloadedError,
  type WireClientOptions,
  type WireServerOptions,
} from '../../lib/index.js';
import { startWireApp, type RunningServer } from './apps.js';
import { FaultProxy } from './fault-proxy.js';

/**
 * Lets `WireOverloadedError` pass Nest's exception filters, so the call is answered with
 * `WIRE_OVERLOADED` (Nest's default filter would turn it into "Internal server error").
 */
@Catch(WireOverloadedError)
export class PassOverloaded implements RpcExceptionFilter<WireOverloadedError> {
  catch(err: WireOverloadedError): Observable<never> {
    return throwError(() => err);
  }
}

/** What one test server does and what it saw. Tests switch `overloaded` / `stallMs` at any time. */
export class Behaviour {
  /** Handler runs per request id (`data.id`). */
  readonly invocations = new Map<number, number>();
  total = 0;
  /** Handlers whose signal aborted (the client cancelled them). */
  aborted = 0;
  /** Answer every call with WireOverloadedError. */
  overloaded = false;
  /** Extra time a call waits, chosen per request id (0: answers at once). */
  stallMs: (id: number) => number = () => 0;
  constructor(readonly name: string) {}
}

/** Waits `ms`, or less if `signal` aborts (counting the abort). */
function sleep(ms: number, signal: AbortSignal, behaviour: Behaviour): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0) return resolve();
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      behaviour.aborted++;
      clearTimeout(timer);
      resolve();
    });
  });
}

/** A Nest module whose `work` handler records its invocations on `behaviour`. */
export function resilienceModule(behaviour: Behaviour): unknown {
  @Controller()
  @UseFilters(new PassOverloaded())
  class WorkController {
    @MessagePattern('work')
    async work(
      @Payload() data: { id: number; ms?: number },
      @Ctx() ctx: WireContext,
    ): Promise<{ id: number; server: string }> {
      behaviour.invocations.set(data.id, (behaviour.invocations.get(data.id) ?? 0) + 1);
      behaviour.total++;
      if (behaviour.overloaded) throw new WireOverloadedError(`${behaviour.name} is overloaded`);
      await sleep((data.ms ?? 0) + behaviour.stallMs(data.id), ctx.getSignal(), behaviour);
      return { id: data.id, server: behaviour.name };
    }

    @MessagePattern('work.stream')
    async *workStream(@Payload() data: { id: number; count: number }, @Ctx() ctx: WireContext): AsyncIterable<number> {
      behaviour.invocations.set(data.id, (behaviour.invocations.get(data.id) ?? 0) + 1);
      behaviour.total++;
      await sleep(behaviour.stallMs(data.id), ctx.getSignal(), behaviour);
      for (let i = 0; i < data.count; i++) yield i;
    }
  }
  @Module({ controllers: [WorkController] })
  class WorkModule {}
  return WorkModule;
}

/** One server of a fleet: a real Nest app behind a fault proxy (the client dials the proxy). */
export interface FleetMember {
  behaviour: Behaviour;
  running: RunningServer;
  proxy: FaultProxy;
  endpoint: string;
}

/** Starts `n` servers, each behind its own proxy. */
export async function startFleet(
  n: number,
  options: WireServerOptions | ((i: number) => WireServerOptions) = {},
): Promise<FleetMember[]> {
  const fleet: FleetMember[] = [];
  for (let i = 0; i < n; i++) {
    const behaviour = new Behaviour(String.fromCharCode(97 + i));
    const running = await startWireApp(
      resilienceModule(behaviour),
      typeof options === 'function' ? options(i) : options,
    );
    const proxy = await FaultProxy.start(running.port);
    fleet.push({ behaviour, running, proxy, endpoint: `127.0.0.1:${proxy.port}` });
  }
  return fleet;
}

export async function stopFleet(fleet: FleetMember[]): Promise<void> {
  for (const m of fleet) {
    await m.proxy.close().catch(() => {});
    await m.running.app.close();
  }
}

/** A client over every member of the fleet, connected to all of them. */
export async function fleetClient(fleet: FleetMember[], options: WireClientOptions = {}): Promise<WireClient> {
  const client = new WireClient({ servers: fleet.map((m) => m.endpoint), ...options });
  await client.connect();
  await waitUntil(() => client.stats().endpoints.filter((e) => e.state === 'ready').length === fleet.length);
  return client;
}

/** Polls `predicate` every 5 ms until it holds; rejects after `ms`. */
export async function waitUntil(predicate: () => boolean, ms = 5000): Promise<void> {
  const until = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Handler invocations per request id across the fleet. */
export function invocationsById(fleet: FleetMember[]): Map<number, number> {
  const all = new Map<number, number>();
  for (const m of fleet) for (const [id, n] of m.behaviour.invocations) all.set(id, (all.get(id) ?? 0) + n);
  return all;
}
