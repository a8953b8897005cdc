// The baseline: a bare node:http server answering GET /token with the same JSON body tokend sends.
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const body = process.env.BARE_BODY ?? '{}';
createServer((req, res) => {
  if (req.url !== '/token') {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}).listen(port, '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
