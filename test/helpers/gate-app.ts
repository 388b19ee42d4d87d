import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { nextTurn, pause } from './wait.js';

/** Counts running `gate` handlers, to check the server's per-connection limit. */
export const gate = { running: 0, maxRunning: 0, probe: null as (() => void) | null };

@Controller()
class GateController {
  @MessagePattern('gate')
  async gate(@Payload() ms: number): Promise<number> {
    gate.running++;
    gate.maxRunning = Math.max(gate.maxRunning, gate.running);
    gate.probe?.();
    await (ms === 0 ? nextTurn() : pause(ms)); // 0: one event-loop turn, not a 1 ms timer
    gate.running--;
    return ms;
  }
}

@Module({ controllers: [GateController] })
export class GateModule {}
