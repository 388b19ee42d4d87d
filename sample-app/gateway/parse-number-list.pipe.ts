import { BadRequestException, Injectable, type PipeTransform } from '@nestjs/common';

/** Parses a comma-separated query value such as `1,2,3.5` into numbers. */
@Injectable()
export class ParseNumberListPipe implements PipeTransform<unknown, number[]> {
  transform(value: unknown): number[] {
    const parts = typeof value === 'string' ? value.split(',').map((part) => part.trim()) : [];
    const numbers = parts.map((part) => (part === '' ? Number.NaN : Number(part)));
    if (numbers.length === 0 || !numbers.every(Number.isFinite)) {
      throw new BadRequestException('expected a comma-separated list of numbers, e.g. ?numbers=1,2,3');
    }
    return numbers;
  }
}
