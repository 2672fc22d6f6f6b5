// nghttp2's HPACK (through Node's http2) as the oracle for interceptor/hpack.ts; driven by
// hpack_oracle_test.ts. Header strings are latin1 both ways, as Node passes them to nghttp2.
//
//   node hpack_oracle.mjs client  — stdin: one JSON line {port, connections: [[fields, ...], ...]};
//     each connection is a fresh prior-knowledge session sending its requests one at a time.
//     Prints {"done": true} when every response arrived.
//   node hpack_oracle.mjs server <json table sizes> — one server per SETTINGS_HEADER_TABLE_SIZE;
//     prints {"ports": [...]}, then {"port", "sid", "raw"} per request received (raw: the
//     decoded [name, value, ...] list). A request with x-oracle-table-size: N makes the server
//     send SETTINGS_HEADER_TABLE_SIZE = N before answering it.
import http2 from "node:http2";
import { once } from "node:events";

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");

async function client() {
  let text = "";
  for await (const chunk of process.stdin) text += chunk;
  const { port, connections } = JSON.parse(text);
  for (const requests of connections) {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", (e) => out({ error: String(e) }));
    // Our SETTINGS (its table size) must reach nghttp2's encoder before the first block.
    await once(session, "remoteSettings");
    for (const fields of requests) {
      const headers = {};
      for (const [n, v] of fields) {
        if (!(n in headers)) headers[n] = v;
        else if (Array.isArray(headers[n])) headers[n].push(v);
        else headers[n] = [headers[n], v];
      }
      const req = session.request(headers, { endStream: true });
      req.resume();
      await once(req, "response");
      await once(req, "close");
    }
    session.close();
    await once(session, "close");
  }
  out({ done: true });
}

async function server(sizes) {
  const ports = [];
  for (const size of sizes) {
    const srv = http2.createServer({ settings: { headerTableSize: size } });
    srv.on("stream", (stream, _headers, _flags, raw) => {
      const port = srv.address().port;
      out({ port, sid: stream.id, raw });
      const next = raw.indexOf("x-oracle-table-size");
      if (next >= 0 && next % 2 === 0) {
        stream.session.settings({ headerTableSize: Number(raw[next + 1]) });
      }
      stream.respond({ ":status": 200 }, { endStream: true });
    });
    srv.on("sessionError", (e) => out({ error: String(e) }));
    srv.listen(0, "127.0.0.1");
    await once(srv, "listening");
    ports.push(srv.address().port);
  }
  out({ ports });
  // Ends when the test closes stdin.
  process.stdin.resume();
  process.stdin.on("end", () => process.exit(0));
}

if (process.argv[2] === "client") await client();
else await server(JSON.parse(process.argv[3] ?? "[4096]"));
