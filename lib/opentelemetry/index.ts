/** `nest-wire/opentelemetry`: optional, needs `@opentelemetry/api` installed. */
export {
  WireInstrumentation,
  INSTRUMENTATION_NAME,
  INSTRUMENTATION_VERSION,
  type WireInstrumentationConfig,
} from './wire-instrumentation.js';
export { RPC_SYSTEM, UNKNOWN_METHOD } from './span-attributes.js';
