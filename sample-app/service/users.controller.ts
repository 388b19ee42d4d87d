import { Controller } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { USER_CREATED, USER_EVENTS, type RecordedUserEvent, type UserCreatedEvent } from '../patterns.js';
import { UserEventsStore } from './user-events.store.js';

@Controller()
export class UsersController {
  constructor(private readonly store: UserEventsStore) {}

  /** An event: nothing is sent back, the gateway does not wait for it to be handled. */
  @EventPattern(USER_CREATED)
  onUserCreated(@Payload() event: UserCreatedEvent): void {
    this.store.record(event);
  }

  @MessagePattern(USER_EVENTS)
  events(): RecordedUserEvent[] {
    return this.store.list();
  }
}
