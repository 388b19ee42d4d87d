import { startGateway, startService } from './bootstrap.js';
import { loadConfig } from './config.js';
import { printCurlExamples } from './curl-examples.js';
import { closeOnSignals } from './shutdown.js';

/** The math service and its HTTP gateway in one process, talking over nest-wire on loopback. */
const config = loadConfig();
const service = await startService(config.wirePort, { host: config.wireHost });
const gateway = await startGateway(config.httpPort, service.port, {
  host: config.httpHost,
  wireHost: config.wireHost,
}).catch(async (err: unknown) => {
  await service.app.close();
  throw err;
});
console.log(`math service (nest-wire) on ${config.wireHost}:${service.port}`);
printCurlExamples(gateway.url);
closeOnSignals(gateway.app, service.app);
