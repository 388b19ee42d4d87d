import { BadRequestException, Injectable, type PipeTransform } from '@nestjs/common';

/** Checks that an integer (from `ParseIntPipe`) lies within `[min, max]`. */
@Injectable()
export class IntRangePipe implements PipeTransform<number, number> {
  constructor(
    private readonly min: number,
    private readonly max: number,
  ) {}

  transform(value: number): number {
    if (value < this.min || value > this.max) {
      throw new BadRequestException(`expected an integer from ${this.min} to ${this.max}, got ${value}`);
    }
    return value;
  }
}
