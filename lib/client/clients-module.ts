import type { ModuleMetadata, Provider, Type } from '@nestjs/common';
import type { ClientProviderOptions, ClientsProviderAsyncOptions } from '@nestjs/microservices';
import type { WireClientOptions } from '../options.js';
import { WireClient } from './wire-client.js';

/**
 * A `ClientsModule.register` entry whose `options` are type-checked as `WireClientOptions`
 * (Nest types them `Record<string, any>`, so a misspelt option would only fail at start-up):
 * `ClientsModule.register([wireClient('MATH', { host, port })])`. `customClass` is for a
 * `WireClient` subclass (one overriding `serializeError`, say).
 */
export function wireClient(
  name: string | symbol,
  options: WireClientOptions = {},
  customClass: Type<WireClient> = WireClient,
): ClientProviderOptions {
  return { name, customClass, options };
}

/**
 * Keys of `R` that `WireClientOptions` lacks, typed `never`: a factory's returned object literal
 * gets no excess-property check of its own, so this gives a misspelt option a type error.
 */
type NoExtraKeys<R> = { [K in Exclude<keyof R, keyof WireClientOptions>]: never };

/** What `wireClientAsync` takes: `ClientsModule.registerAsync`'s factory form, returning `WireClientOptions`. */
export interface WireClientAsyncOptions<R extends WireClientOptions = WireClientOptions> extends Pick<
  ModuleMetadata,
  'imports'
> {
  name: string | symbol;
  /** Called with the `inject`ed providers; returns the client's options. */
  useFactory: (...args: any[]) => (R & NoExtraKeys<R>) | Promise<R & NoExtraKeys<R>>;
  inject?: any[];
  extraProviders?: Provider[];
  customClass?: Type<WireClient>;
}

/**
 * A `ClientsModule.registerAsync` entry whose factory returns type-checked `WireClientOptions`:
 * `ClientsModule.registerAsync([wireClientAsync({ name: 'MATH', inject: [ConfigService], useFactory: (c) => ({ ... }) })])`.
 */
export function wireClientAsync<R extends WireClientOptions>(
  registration: WireClientAsyncOptions<R>,
): ClientsProviderAsyncOptions {
  const { useFactory, customClass = WireClient, ...rest } = registration;
  return {
    ...rest,
    useFactory: async (...args: unknown[]) => ({ customClass, options: await useFactory(...(args as never[])) }),
  };
}
