// Lets a child process run the TypeScript sources directly (node --import ./test/helpers/ts-loader.mjs x.ts),
// so a test can measure a server's memory and event loop in a process of its own.
// Each .ts file is transpiled on load with the project's compiler options (no type check).
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
