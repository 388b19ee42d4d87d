// A hostile "server" in a process of its own (so the test measures only the client): it
// answers the first 24 REQUESTs with 64 KiB fragments (RESPONSE | MORE), round robin,
// 15.5 MiB per call, and never the last fragment. argv[2]: "within-window" waits for
// CREDIT id 0 (256 KiB window); "ignore-window" does not; "big-fragment" sends 1 MiB
// fragments, each alone larger than the window.
// Prints "PORT <n>", then "DONE" once everything is sent or the client closed.
import { createServer } from 'node:net';

const mode = process.argv[2];
const ignoreWindow = mode !== 'within-window';
const MAGIC = Buffer.from('NWIR');
const CALLS = 24;
const TOTAL = CALLS * 15.5 * 1024 * 1024;
const FRAGMENT = Buffer.alloc(mode === 'big-fragment' ? 1024 * 1024 : 64 * 1024, 3);

function frame(type, flags, id, body) {
  const head = Buffer.alloc(10);
  head.writeUInt32BE(6 + body.length, 0);
  head[4] = type;
  head[5] = flags;
  head.writeUInt32BE(id, 6);
  return [head, body];
}

function hello() {
  const b = Buffer.alloc(16);
  b[0] = 1; // version
  b[1] = 1; // msgpack
  b.writeUInt16BE(0x0100, 2); // fragments
  b.writeUInt32BE(16 * 1024 * 1024, 4);
  return Buffer.concat(frame(1, 0, 0, b));
}

const server = createServer((socket) => {
  socket.on('error', () => {});
  socket.write(Buffer.concat([MAGIC, hello()]));
  const ids = [];
  let window = 256 * 1024;
  let sent = 0;
  let k = 0;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    process.stdout.write('DONE\n');
  };
  const pump = () => {
    while ((ignoreWindow || window >= FRAGMENT.length) && sent < TOTAL && !socket.destroyed) {
      const [head, body] = frame(4, 0x04, ids[k++ % ids.length], FRAGMENT);
      socket.write(head);
      const ok = socket.write(body);
      window -= FRAGMENT.length;
      sent += FRAGMENT.length;
      if (!ok) {
        socket.once('drain', pump);
        return;
      }
    }
    if (sent >= TOTAL || socket.destroyed) finish();
  };
  socket.on('close', finish);
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    let p = buf.subarray(0, 4).equals(MAGIC) ? 4 : 0;
    while (buf.length - p >= 10 && buf.length - p >= 4 + buf.readUInt32BE(p)) {
      const len = buf.readUInt32BE(p);
      const type = buf[p + 4];
      const id = buf.readUInt32BE(p + 6);
      if (type === 2) {
        ids.push(id);
        if (ids.length === CALLS) pump();
      } else if (type === 11 && id === 0) {
        window += buf.readUInt32BE(p + 10);
        if (ids.length === CALLS) pump();
      }
      p += 4 + len;
    }
    buf = buf.subarray(p);
  });
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`PORT ${server.address().port}\n`));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
