import { trace, type MeterProvider, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { instrumentation } from '../diagnostics/instrumentation-hooks.js';
import { WireOptionsError } from '../errors.js';
import { SpanHooks, type TracerSource } from './span-hooks.js';

/** Options of `WireInstrumentation` (`InstrumentationConfig` of `@opentelemetry/instrumentation`). */
export interface WireInstrumentationConfig {
  /** Enable at construction (default true), as every OpenTelemetry instrumentation does. */
  enabled?: boolean;
}

const KNOWN_CONFIG_KEYS = new Set(['enabled']);

/** The instrumentation scope of the spans. */
export const INSTRUMENTATION_NAME = 'nest-wire';
/** nest-wire's version (kept equal to package.json's, checked by a test). */
export const INSTRUMENTATION_VERSION = '0.1.0';

/**
 * OpenTelemetry tracing for nest-wire, installed like any other instrumentation:
 *
 * ```ts
 * new NodeSDK({ instrumentations: [new WireInstrumentation()] }).start();
 * ```
 *
 * It implements the `Instrumentation` interface of `@opentelemetry/instrumentation` (without
 * depending on that package: only `@opentelemetry/api` is needed at run time). While enabled,
 * every `WireClient` and `WireServer` of the process — created before or after, by
 * `ClientsModule` or by hand, from the ESM or the CommonJS build — makes one span per call
 * (CLIENT / SERVER for requests and streams, PRODUCER / CONSUMER for events), carries the
 * span context in the call's metadata through the global propagator, and runs handlers
 * inside their SERVER span, so a nested `send()` continues the trace.
 *
 * One instrumentation is active at a time: enabling another replaces this one.
 */
export class WireInstrumentation implements TracerSource {
  readonly instrumentationName = INSTRUMENTATION_NAME;
  readonly instrumentationVersion = INSTRUMENTATION_VERSION;
  private config: WireInstrumentationConfig;
  private currentTracer: Tracer;
  private readonly hooks = new SpanHooks(this);
  private enabled = false;

  constructor(config: WireInstrumentationConfig = {}) {
    this.config = checkConfig(config);
    // The global provider (a proxy until an SDK registers one), as InstrumentationBase does.
    this.currentTracer = trace.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
    if (this.config.enabled) this.enable();
  }

  /** The tracer spans are made with. */
  get tracer(): Tracer {
    return this.currentTracer;
  }

  setTracerProvider(provider: TracerProvider): void {
    this.currentTracer = provider.getTracer(INSTRUMENTATION_NAME, INSTRUMENTATION_VERSION);
  }

  /** nest-wire records no metrics through OpenTelemetry (its counters are in `stats()`): accepted and unused. */
  setMeterProvider(_provider: MeterProvider): void {}

  setConfig(config: WireInstrumentationConfig): void {
    this.config = checkConfig(config);
  }

  getConfig(): WireInstrumentationConfig {
    return this.config;
  }

  /** Starts tracing every nest-wire client and server of the process (again, if another instrumentation took over). */
  enable(): void {
    this.enabled = true;
    instrumentation.hooks = this.hooks;
  }

  disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    // Only our own hooks: another instrumentation enabled since then stays.
    if (instrumentation.hooks === this.hooks) instrumentation.hooks = null;
  }
}

function checkConfig(config: WireInstrumentationConfig): WireInstrumentationConfig {
  if (config === null || typeof config !== 'object') {
    throw new WireOptionsError('WireInstrumentation config must be an object');
  }
  for (const key of Object.keys(config)) {
    if (!KNOWN_CONFIG_KEYS.has(key)) {
      throw new WireOptionsError(
        `unknown WireInstrumentation option "${key}" (valid: ${[...KNOWN_CONFIG_KEYS].join(', ')})`,
      );
    }
  }
  if (config.enabled !== undefined && typeof config.enabled !== 'boolean') {
    throw new WireOptionsError('WireInstrumentation option enabled must be a boolean');
  }
  return { enabled: true, ...config };
}
