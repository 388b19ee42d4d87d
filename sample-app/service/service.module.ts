import { Module } from '@nestjs/common';
import { DiagnosticsController } from './diagnostics.controller.js';
import { MathController } from './math.controller.js';
import { UserEventsStore } from './user-events.store.js';
import { UsersController } from './users.controller.js';

/** The microservice: served over nest-wire by a `WireServer`. */
@Module({
  controllers: [MathController, UsersController, DiagnosticsController],
  providers: [UserEventsStore],
})
export class ServiceModule {}
