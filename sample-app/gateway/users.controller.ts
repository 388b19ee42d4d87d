import { Body, Controller, Get, HttpCode, HttpStatus, Inject, Post } from '@nestjs/common';
import { WireClient } from 'nest-wire';
import { randomUUID } from 'node:crypto';
import { lastValueFrom, type Observable } from 'rxjs';
import { USER_CREATED, USER_EVENTS, type RecordedUserEvent, type UserCreatedEvent } from '../patterns.js';
import { MATH_SERVICE } from './math-service.client.js';
import { NewUserPipe, type NewUser } from './new-user.pipe.js';

@Controller('users')
export class UsersController {
  constructor(@Inject(MATH_SERVICE) private readonly service: WireClient) {}

  /** `POST /users {"name","email"}` → 202: the `user.created` event was sent, not yet handled. */
  @Post()
  @HttpCode(HttpStatus.ACCEPTED)
  async create(@Body(NewUserPipe) user: NewUser): Promise<UserCreatedEvent> {
    const event: UserCreatedEvent = { id: randomUUID(), ...user, createdAt: new Date().toISOString() };
    await lastValueFrom(this.service.emit(USER_CREATED, event), { defaultValue: undefined });
    return event;
  }

  /** `GET /users/events` → the `user.created` events the service has recorded. */
  @Get('events')
  events(): Observable<RecordedUserEvent[]> {
    return this.service.send<RecordedUserEvent[]>(USER_EVENTS, {});
  }
}
