import { Controller, Inject, Post, Req, Res, UnsupportedMediaTypeException } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WireClient } from 'nest-wire';
import type { Observable } from 'rxjs';
import { UPLOAD_DIGEST, UPPERCASE_LINES, type UploadDigest } from '../patterns.js';
import { MATH_SERVICE } from './math-service.client.js';
import { toHttpException } from './rpc-error-to-http.js';

/** An upload may take longer than a call: its timeout covers the whole stream. */
export const UPLOAD_TIMEOUT_MS = 60_000;

/**
 * Streams in both directions over HTTP. The request body is a Node readable stream (an
 * AsyncIterable of Buffers): handed to `send()` as the source, it goes to the service
 * chunk by chunk, read from the socket only as fast as the service consumes it (nest-wire's
 * credit), so the gateway never holds the body whole.
 */
@Controller()
export class FilesController {
  constructor(@Inject(MATH_SERVICE) private readonly service: WireClient) {}

  /**
   * `POST /files` with a raw body (`--data-binary @file`, any type but JSON or a form,
   * which Nest's body parser would have read already) → `{ size, sha256, chunks }`.
   */
  @Post('files')
  upload(@Req() req: IncomingMessage): Observable<UploadDigest> {
    unread(req);
    return this.service.send<UploadDigest>(UPLOAD_DIGEST, req, { timeout: UPLOAD_TIMEOUT_MS });
  }

  /**
   * `POST /text/uppercase` with a text body → the same lines upper-cased, each written to the
   * response as the service answers it, while the rest of the body is still being sent.
   */
  @Post('text/uppercase')
  uppercase(@Req() req: IncomingMessage, @Res() res: ServerResponse): void {
    unread(req);
    const subscription = this.service
      .send<string>(UPPERCASE_LINES, linesOf(req), { timeout: UPLOAD_TIMEOUT_MS })
      .subscribe({
        next: (line: string) => {
          if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          res.write(`${line}\n`);
        },
        error: (err: unknown) => {
          if (res.headersSent) return void res.destroy(); // the status is gone: cut the body short
          const http = toHttpException(err);
          res.writeHead(http?.getStatus() ?? 500, { 'content-type': 'application/json' });
          res.end(JSON.stringify(http?.getResponse() ?? { message: 'Internal server error' }));
        },
        complete: () => {
          if (!res.headersSent) res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
          res.end();
        },
      });
    // The HTTP client went away: unsubscribing sends CANCEL, and the request body is released.
    res.on('close', () => subscription.unsubscribe());
  }
}

/** Bodies Nest's default body parser reads before the handler runs (then nothing is left to stream). */
const PARSED_TYPES = /^application\/(json|x-www-form-urlencoded)|\+json/i;

/** The body must still be unread: a JSON or form body was consumed by Nest's body parser. */
function unread(req: IncomingMessage): void {
  if (PARSED_TYPES.test(req.headers['content-type'] ?? '')) {
    throw new UnsupportedMediaTypeException('send the body as raw bytes (e.g. application/octet-stream or text/plain)');
  }
}

/** The lines of a text body, as they arrive (a line split across two chunks is joined). */
async function* linesOf(body: AsyncIterable<Buffer | string>): AsyncGenerator<string> {
  let rest = '';
  for await (const chunk of body) {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop()!;
    yield* lines;
  }
  if (rest !== '') yield rest;
}
