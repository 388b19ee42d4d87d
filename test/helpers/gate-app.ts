import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';

/** A handler that yields to the event loop: `ms` 0 means one turn, not a 1 ms timer. */
const pause = (ms: number) => new Promise((r) => (ms === 0 ? setImmediate(r) : setTimeout(r, ms)));

/** Counts running `gate` handlers, to check the server's per-connection limit. */
export const gate = { running: 0, maxRunning: 0, probe: null as (() => void) | null };

@Controller()
class GateController {
  @MessagePattern('gate')
  async gate(@Payload() ms: number): Promise<number> {
    gate.running++;
    gate.maxRunning = Math.max(gate.maxRunning, gate.running);
    gate.probe?.();
    await pause(ms);
    gate.running--;
    return ms;
  }
}

@Module({ controllers: [GateController] })
export class GateModule {}
