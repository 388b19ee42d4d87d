import { BadRequestException, Injectable, type PipeTransform } from '@nestjs/common';

export interface NewUser {
  name: string;
  email: string;
}

/** Validates the body of `POST /users`: `{ "name": "...", "email": "...@..." }`. */
@Injectable()
export class NewUserPipe implements PipeTransform<unknown, NewUser> {
  transform(body: unknown): NewUser {
    const { name, email } = (body ?? {}) as Record<string, unknown>;
    if (typeof name !== 'string' || name.trim() === '') {
      throw new BadRequestException('name must be a non-empty string');
    }
    if (typeof email !== 'string' || !/^[^@\s]+@[^@\s]+$/.test(email)) {
      throw new BadRequestException('email must be an email address');
    }
    return { name: name.trim(), email };
  }
}
