/** `nest-wire/terminus`: optional, needs `@nestjs/terminus` installed. */
export { WireHealthIndicator } from './wire-health-indicator.js';
