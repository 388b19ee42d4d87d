import { startGateway } from './bootstrap.js';
import { loadConfig } from './config.js';
import { printCurlExamples } from './curl-examples.js';
import { closeOnSignals } from './shutdown.js';

/**
 * The HTTP gateway alone (`HTTP_HOST`, `HTTP_PORT`), calling the math service at
 * `WIRE_HOST:WIRE_PORT`, or spreading calls over the services listed in `WIRE_SERVERS`
 * (`host:port,host:port`). It connects on the first call, so either may start first.
 */
const config = loadConfig();
const gateway = await startGateway(config.httpPort, config.wireServers ?? config.wirePort, {
  host: config.httpHost,
  wireHost: config.wireHost,
});
if (config.wireServers) console.log(`gateway calls the math services at ${config.wireServers.join(', ')}`);
printCurlExamples(gateway.url);
closeOnSignals(gateway.app);
