import { Injectable } from '@nestjs/common';
import type { RecordedUserEvent, UserCreatedEvent } from '../patterns.js';

/** Most recent events kept; older ones are dropped. */
export const USER_EVENTS_CAPACITY = 100;

/** In-memory record of the `user.created` events this service received. */
@Injectable()
export class UserEventsStore {
  private readonly events: RecordedUserEvent[] = [];

  record(event: UserCreatedEvent): void {
    this.events.push({ ...event, receivedAt: new Date().toISOString() });
    if (this.events.length > USER_EVENTS_CAPACITY) this.events.shift();
  }

  list(): RecordedUserEvent[] {
    return [...this.events];
  }
}
