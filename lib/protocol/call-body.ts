import { WireProtocolError } from '../errors.js';
import { FrameType, REQUEST_HAS_CREDIT, REQUEST_HAS_DEADLINE, REQUEST_HAS_METADATA, REQUEST_STREAM } from './frame.js';

/**
 * The fields of a REQUEST or EVENT body. One instance is reused for every frame a
 * connection reads (filled by `readCallBody`), so parsing allocates only the pattern
 * string and two views.
 */
export class CallBody {
  /** Remaining time budget in ms, or -1 if the frame carries none. */
  budgetMs = -1;
  /** Initial stream credit, or 0 if the frame carries none (no flow control asked). */
  credit = 0;
  pattern = '';
  /** Length of the pattern in UTF-8 bytes, as sent. */
  patternBytes = 0;
  /** Codec-encoded metadata, or null. A view: valid only while the frame is. */
  metadata: Buffer | null = null;
  /** Codec-encoded payload. A view: valid only while the frame is. */
  payload: Buffer = EMPTY;
  /** REQUEST_STREAM: the call's values follow in STREAM frames (its payload is ignored). */
  stream = false;
  /** The metadata once decoded by the session (not by `readCallBody`). */
  decodedMetadata: Record<string, string> | undefined = undefined;
  /**
   * A copy of the bytes `pattern` was read from, or null: a frame with the same pattern
   * bytes (most of them: a connection calls few patterns) reuses the string.
   */
  patternSource: Buffer | null = null;
}

/** Patterns up to this many bytes are remembered (as bytes) for the next frame. */
const REMEMBERED_PATTERN_BYTES = 64;

const EMPTY = Buffer.alloc(0);

/**
 * Layout: [u32 budgetMs if HAS_DEADLINE] [u32 credit if HAS_CREDIT] u16 patternLength, pattern (UTF-8),
 * [u32 metadataLength, metadata if HAS_METADATA], payload (the rest, never empty).
 *
 * The `<field>` of a truncation error is one of TRUNCATED_FIELDS (docs/PROTOCOL.md §2.2).
 * A credit of 0 is refused on a REQUEST only: an EVENT's credit (and budget) are parsed
 * and ignored.
 */
export function readCallBody(
  body: Buffer,
  flags: number,
  out: CallBody,
  type: FrameType.REQUEST | FrameType.EVENT = FrameType.REQUEST,
): void {
  let p = 0;
  const end = body.length;
  out.stream = type === FrameType.REQUEST && (flags & REQUEST_STREAM) !== 0;
  if ((flags & REQUEST_HAS_DEADLINE) !== 0) {
    if (end < 4) throw truncated('deadline');
    out.budgetMs = body.readUInt32BE(0);
    p = 4;
  } else {
    out.budgetMs = -1;
  }
  if ((flags & REQUEST_HAS_CREDIT) !== 0) {
    if (end - p < 4) throw truncated('credit');
    out.credit = body.readUInt32BE(p);
    if (out.credit === 0 && type === FrameType.REQUEST)
      throw new WireProtocolError('initial stream credit must be at least 1');
    p += 4;
  } else {
    out.credit = 0;
  }
  if (end - p < 2) throw truncated('pattern length');
  const patternLength = body.readUInt16BE(p);
  p += 2;
  if (end - p < patternLength) throw truncated('pattern');
  out.patternBytes = patternLength;
  if (!sameBytes(body, p, patternLength, out.patternSource)) {
    out.pattern = body.toString('utf8', p, p + patternLength);
    out.patternSource =
      patternLength <= REMEMBERED_PATTERN_BYTES ? Buffer.from(body.subarray(p, p + patternLength)) : null;
  }
  p += patternLength;
  if ((flags & REQUEST_HAS_METADATA) !== 0) {
    if (end - p < 4) throw truncated('metadata length');
    const metadataLength = body.readUInt32BE(p);
    p += 4;
    if (end - p < metadataLength) throw truncated('metadata');
    out.metadata = body.subarray(p, p + metadataLength);
    p += metadataLength;
  } else {
    out.metadata = null;
  }
  if (p >= end) throw truncated('payload');
  out.payload = body.subarray(p, end);
}

/** True when `body[p, p + n)` holds exactly the bytes of `source`. */
function sameBytes(body: Buffer, p: number, n: number, source: Buffer | null): boolean {
  if (source === null || source.length !== n) return false;
  for (let i = 0; i < n; i++) if (body[p + i] !== source[i]) return false;
  return true;
}

/** The field names a truncation error can name, in body order. */
export const TRUNCATED_FIELDS = [
  'deadline',
  'credit',
  'pattern length',
  'pattern',
  'metadata length',
  'metadata',
  'payload',
] as const;

function truncated(field: (typeof TRUNCATED_FIELDS)[number]): WireProtocolError {
  return new WireProtocolError(`call frame truncated: ${field} runs past the end of the frame`);
}
