import { WireOptionsError } from '../../lib/index.js';
import { resolveClientOptions, resolveServerOptions } from '../../lib/options.js';

describe('hardening options', () => {
  it('has safe defaults', () => {
    const server = resolveServerOptions();
    expect(server).toMatchObject({
      maxDecodedBytes: 16 * 1024 * 1024,
      maxDecompressedBytes: 1024 * 1024,
      maxDecodedBytesPerConnection: 64 * 1024 * 1024,
      maxDecodedBytesPerServer: 256 * 1024 * 1024,
    });
    expect(resolveClientOptions()).toMatchObject({
      maxDecodedBytes: 16 * 1024 * 1024,
      maxFragmentedBytes: 64 * 1024 * 1024,
    });
  });

  it.each([
    ['maxDecodedBytes', 10],
    ['maxDecompressedBytes', 1024],
    ['maxDecompressedBytes', 32 * 1024 * 1024],
    ['maxDecodedBytesPerConnection', -1],
    ['maxDecodedBytesPerServer', 1.5],
  ])('refuses server option %s = %p, naming it', (name, value) => {
    expect(() => resolveServerOptions({ [name]: value })).toThrow(WireOptionsError);
    expect(() => resolveServerOptions({ [name]: value })).toThrow(name);
  });

  it('refuses a client streamCredit above the credit a server accepts, and a bad maxFragmentedBytes', () => {
    expect(() => resolveClientOptions({ streamCredit: 65_537 })).toThrow(/streamCredit/);
    expect(resolveClientOptions({ streamCredit: 65_536 }).streamCredit).toBe(65_536);
    expect(() => resolveClientOptions({ maxFragmentedBytes: 0 })).toThrow(/maxFragmentedBytes/);
  });

  it('lets maxDecompressedBytes follow a small maxFrameSize', () => {
    expect(resolveServerOptions({ maxFrameSize: 64 * 1024 }).maxDecompressedBytes).toBe(64 * 1024);
  });
});
