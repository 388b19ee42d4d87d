// Opens N raw nest-wire client connections to 127.0.0.1:PORT from a separate process,
// so that the test process's heap holds only the server's side of them.
// Each connection: preface + HELLO, one REQUEST 'sum' [i, 1] checked (answer i + 1),
// then it stays idle, answering the server's heartbeat PINGs with PONGs.
// Prints "READY <ok> <failed>" once every connection has been served; exits when stdin
// closes (or after 120 s at most).
//
// Usage: node idle-peers.mjs <port> <count>
import { connect } from 'node:net';
import { pack, unpack } from 'msgpackr';

const [port, count] = process.argv.slice(2).map(Number);
const MAGIC = Buffer.from('NWIR');

function frame(type, flags, id, body) {
  const out = Buffer.alloc(10 + body.length);
  out.writeUInt32BE(6 + body.length, 0);
  out[4] = type;
  out[5] = flags;
  out.writeUInt32BE(id, 6);
  body.copy(out, 10);
  return out;
}

function hello() {
  const b = Buffer.alloc(16);
  b[0] = 1; // version
  b[1] = 1; // msgpack
  b.writeUInt32BE(1 << 20, 4); // maxFrameSize
  return frame(1, 0, 0, b);
}

function request(id, pattern, data) {
  const p = Buffer.from(pattern);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(p.length);
  return frame(2, 0, id, Buffer.concat([len, p, pack(data)]));
}

let ok = 0;
let failed = 0;
const sockets = [];

function done() {
  if (ok + failed === count) process.stdout.write(`READY ${ok} ${failed}\n`);
}

for (let i = 0; i < count; i++) {
  const socket = connect({ host: '127.0.0.1', port });
  sockets.push(socket);
  let buf = Buffer.alloc(0);
  let served = false;
  let sawMagic = false;
  const fail = () => {
    if (served) return;
    served = true;
    failed++;
    done();
  };
  socket.on('error', fail);
  socket.on('close', fail);
  socket.on('connect', () => socket.write(Buffer.concat([MAGIC, hello(), request(1, 'sum', [i, 1])])));
  socket.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    if (!sawMagic) {
      if (buf.length < 4) return;
      sawMagic = true;
      buf = buf.subarray(4);
    }
    let p = 0;
    while (buf.length - p >= 4) {
      const len = buf.readUInt32BE(p);
      if (buf.length - p < 4 + len) break;
      const type = buf[p + 4];
      const id = buf.readUInt32BE(p + 6);
      const body = buf.subarray(p + 10, p + 4 + len);
      if (type === 4 && id === 1 && !served) {
        served = true;
        if (unpack(body) === i + 1) ok++;
        else failed++;
        done();
      } else if (type === 7) {
        socket.write(frame(8, 0, 0, Buffer.from(body)));
      }
      p += 4 + len;
    }
    buf = Buffer.from(buf.subarray(p));
  });
}

const quit = () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
};
process.stdin.on('end', quit);
process.stdin.on('close', quit);
process.stdin.resume();
setTimeout(quit, 120_000).unref();
