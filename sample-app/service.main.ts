import { startService } from './bootstrap.js';
import { loadConfig } from './config.js';
import { closeOnSignals } from './shutdown.js';

/** The math service alone (`WIRE_HOST`, `WIRE_PORT`). */
const config = loadConfig();
const service = await startService(config.wirePort, { host: config.wireHost });
console.log(`math service (nest-wire) on ${config.wireHost}:${service.port}`);
closeOnSignals(service.app);
