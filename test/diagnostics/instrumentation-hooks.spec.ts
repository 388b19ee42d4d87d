import { instrumentation } from '../../lib/diagnostics/instrumentation-hooks.js';
import { WireInstrumentation } from '../../lib/opentelemetry/index.js';

describe('instrumentation hooks slot', () => {
  afterEach(() => {
    instrumentation.hooks = null;
  });

  it('lives on globalThis under a registered symbol, so every copy of nest-wire in the process shares it', () => {
    const slot = (globalThis as Record<symbol, unknown>)[Symbol.for('nest-wire.instrumentation')];
    expect(slot).toBe(instrumentation);
    expect(instrumentation.hooks).toBeNull();
  });

  it('enable() installs the hooks, disable() removes only its own', () => {
    const first = new WireInstrumentation();
    const installed = instrumentation.hooks;
    expect(installed).not.toBeNull();
    const second = new WireInstrumentation();
    expect(instrumentation.hooks).not.toBe(installed);
    first.disable(); // replaced already: leaves the second one's hooks in place
    expect(instrumentation.hooks).not.toBeNull();
    second.disable();
    expect(instrumentation.hooks).toBeNull();
    first.enable(); // enabled again after another took over
    expect(instrumentation.hooks).toBe(installed);
    first.disable();
    expect(instrumentation.hooks).toBeNull();
  });

  it('a config with enabled: false does not enable at construction; setConfig validates', () => {
    const off = new WireInstrumentation({ enabled: false });
    expect(instrumentation.hooks).toBeNull();
    expect(off.getConfig()).toEqual({ enabled: false });
    off.setConfig({});
    expect(off.getConfig()).toEqual({ enabled: true });
    expect(() => off.setConfig({ requestHook: () => {} } as never)).toThrow(
      /unknown WireInstrumentation option "requestHook"/,
    );
  });
});
