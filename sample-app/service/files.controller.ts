import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import type { WireStream } from 'nest-wire';
import { createHash } from 'node:crypto';
import { map, type Observable } from 'rxjs';
import { UPLOAD_DIGEST, UPPERCASE_LINES, type UploadDigest } from '../patterns.js';
import { badRequest } from './rpc-errors.js';

/**
 * Streams in both directions. The payload of these handlers is the caller's stream (an
 * Observable that is also an AsyncIterable): the service reads it as it arrives, and the
 * caller sends only as fast as the service reads (nest-wire grants credit as values are
 * consumed), so an upload is never held whole on either side.
 */
@Controller()
export class FilesController {
  /** Client streaming: one answer once the stream ends. */
  @MessagePattern(UPLOAD_DIGEST)
  async digest(@Payload() chunks: WireStream<unknown>): Promise<UploadDigest> {
    const hash = createHash('sha256');
    let size = 0;
    let count = 0;
    for await (const chunk of chunks) {
      // Each value is validated as it is read: pipes see the stream, not its values.
      if (!(chunk instanceof Uint8Array)) throw badRequest('expected a stream of byte chunks');
      size += chunk.length;
      count++;
      hash.update(chunk);
    }
    return { size, sha256: hash.digest('hex'), chunks: count };
  }

  /** Bidirectional: each line is answered while the caller is still sending the next ones. */
  @MessagePattern(UPPERCASE_LINES)
  uppercase(@Payload() lines: WireStream<unknown>): Observable<string> {
    return lines.pipe(
      map((line) => {
        if (typeof line !== 'string') throw badRequest('expected a stream of strings');
        return line.toUpperCase();
      }),
    );
  }
}
