import { Module, type DynamicModule } from '@nestjs/common';
import { CountdownTracker } from './countdown-tracker.js';
import { DiagnosticsController } from './diagnostics.controller.js';
import { FilesController } from './files.controller.js';
import { MathController } from './math.controller.js';
import { SERVER_HANDLE, type ServerHandle } from './server-handle.js';
import { UserEventsStore } from './user-events.store.js';
import { UsersController } from './users.controller.js';

/** The microservice: served over nest-wire by a `WireServer`. */
@Module({})
export class ServiceModule {
  /** `server`: the `WireServer` this module is served by, for the `SERVER_STATS` diagnostic. */
  static forRoot(server: ServerHandle): DynamicModule {
    return {
      module: ServiceModule,
      controllers: [MathController, UsersController, DiagnosticsController, FilesController],
      providers: [UserEventsStore, CountdownTracker, { provide: SERVER_HANDLE, useValue: server }],
    };
  }
}
