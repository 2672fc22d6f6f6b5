/**
 * Forwarding to apps that speak HTTP/2 without TLS (Service port
 * appProtocol kubernetes.io/h2c). Rare enough to use Deno's fetch with an
 * HTTP/2-only client (prior knowledge) instead of the raw HTTP/1.1 path; the
 * client side stays HTTP/1.1, so the response is re-framed for it.
 */
import { formatDuration } from "../shared/duration.ts";
import type { Logger } from "../shared/log.ts";
import { writeAll } from "./conn_io.ts";
import { Gone, ProxyFailure } from "./exchange_errors.ts";
import { binaryBytes } from "./http1_bytes.ts";
import { ChunkedScanner, chunkOf, LAST_CHUNK } from "./http1_chunked.ts";
import { contentLengthOf, fieldKind, passesToClient, tokensOf } from "./http1_fields.ts";
import { forwardedHeaderPairs } from "./http1_request.ts";
import { reasonOf, responseHasNoBody } from "./http1_response.ts";
import {
  connectBackoffMs,
  connectDeadline,
  responseHeaderDeadline,
  responseHeaderMs,
} from "./deadlines.ts";
import { type Exchange, Phase, watchHangup } from "./exchange.ts";
import type { ProxyConfig } from "./proxy_contract.ts";

export interface H2cContext {
  cfg: ProxyConfig;
  log: Logger;
  target: string;
  /** The client connection closes after this response (draining, or recycled). */
  closing: () => boolean;
}

let h2Client: Deno.HttpClient | undefined;

function client(): Deno.HttpClient {
  // allowHost: the Host the client sent becomes :authority, as on the HTTP/1.1 path.
  h2Client ??= Deno.createHttpClient({ http1: false, http2: true, allowHost: true });
  return h2Client;
}

/** The request body as a stream, de-chunked, read from the client as the app pulls. */
function bodyStream(ex: Exchange, onDone: () => void): ReadableStream<Uint8Array> {
  const r = ex.c.reader;
  let remaining = ex.req.contentLength > 0 ? ex.req.contentLength : 0;
  const scanner = ex.req.chunked ? new ChunkedScanner() : null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (r.buffered === 0) {
        const n = await r.fill();
        if (n === 0) {
          controller.error(new Gone());
          return;
        }
      }
      if (scanner) {
        const e = scanner.scan(r.buf, r.start, r.end, (a, b) => {
          controller.enqueue(r.buf.slice(a, b));
        });
        r.start = e >= 0 ? e : r.end;
        if (e >= 0) {
          controller.close();
          onDone();
        }
      } else {
        const take = Math.min(remaining, r.buffered);
        controller.enqueue(r.buf.slice(r.start, r.start + take));
        r.start += take;
        remaining -= take;
        if (remaining === 0) {
          controller.close();
          onDone();
        }
      }
    },
  });
}

export async function forwardH2c(ex: Exchange, ctx: H2cContext): Promise<void> {
  const req = ex.req;
  const ep = ex.ep!;
  const hasBody = req.contentLength > 0 || req.chunked;
  // Until the whole request body has been read, the connection cannot carry another request.
  let bodyDone = !hasBody;
  const headers = new Headers();
  for (const [k, v] of forwardedHeaderPairs(req, { clientIp: ex.c.remoteIp, proto: ex.c.proto })) {
    headers.append(k, v);
  }
  // Keep bytes as the app sent them (fetch would otherwise ask for and undo compression).
  if (!headers.has("accept-encoding")) headers.set("accept-encoding", "identity");
  const abort = new AbortController();
  ex.onGone = () => abort.abort(new Gone());
  const url = `http://${ep.addr}${req.path}`;
  let res: Response | undefined;
  const retryUntil = connectDeadline(ctx.cfg, ex.route, ex.t0, ex.requestDeadline, Date.now());
  for (let attempt = 0; res === undefined; attempt++) {
    ex.phase = Phase.AwaitHead;
    const headerMs = responseHeaderMs(ctx.cfg, ex.route);
    ex.c.deadlineAt(
      responseHeaderDeadline(ctx.cfg, ex.route, ex.requestDeadline, Date.now()),
      () => {
        ex.timedOut = true;
        abort.abort(new Error("response header timeout"));
      },
    );
    if (!hasBody) watchHangup(ex);
    try {
      res = await fetch(url, {
        method: req.method,
        headers,
        body: hasBody
          ? bodyStream(ex, () => {
            bodyDone = true;
            watchHangup(ex);
          })
          : undefined,
        client: client(),
        signal: abort.signal,
        redirect: "manual",
      });
    } catch (e) {
      if (ex.gone) throw new Gone();
      if (ex.timedOut) {
        throw new ProxyFailure(
          504,
          `${ctx.target} sent no response head within ${formatDuration(headerMs)}`,
        );
      }
      const wait = connectBackoffMs(attempt);
      // A body already streamed cannot be sent again.
      if (hasBody || Date.now() + wait >= retryUntil) {
        throw new ProxyFailure(
          502,
          `forwarding to ${ctx.target} at ${ep.addr} over h2c failed: ${(e as Error).message}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
      if (ex.gone) throw new Gone();
    }
  }
  ex.c.clearDeadline();
  ex.phase = Phase.Body;
  const http10 = req.minor === 0;
  const noBody = responseHasNoBody(req.method, res.status);
  // Framing is ours to generate: the app's Content-Length only as a parsed number.
  const given = res.headers.get("content-length");
  const length = given === null ? -1 : contentLengthOf(given.trim());
  const chunk = !noBody && length < 0 && !http10;
  const close = !req.keepAlive || ctx.closing() || (!noBody && length < 0 && http10) ||
    !bodyDone;
  let head = `HTTP/1.${http10 ? 0 : 1} ${res.status} ${res.statusText || reasonOf(res.status)}\r\n`;
  const named = tokensOf(res.headers.get("connection"));
  for (const [k, v] of res.headers) {
    if (!passesToClient(fieldKind(k)) || k === "set-cookie" || named.indexOf(k) >= 0) continue;
    head += `${k}: ${v}\r\n`;
  }
  if (length >= 0 && res.status >= 200 && res.status !== 204) {
    head += `Content-Length: ${length}\r\n`;
  }
  for (const cookie of res.headers.getSetCookie()) head += `set-cookie: ${cookie}\r\n`;
  if (ctx.cfg.coldStartHeader) head += `X-KEDA-HTTP-Cold-Start: ${ex.cold}\r\n`;
  if (chunk) head += "Transfer-Encoding: chunked\r\n";
  if (close) head += "Connection: close\r\n";
  else if (http10) head += "Connection: keep-alive\r\n";
  head += "\r\n";
  ex.status = res.status;
  ex.responseStarted = true;
  try {
    await writeAll(ex.c, binaryBytes(head));
    if (!noBody && res.body) {
      for await (const part of res.body) {
        await writeAll(ex.c, chunk ? chunkOf(part) : part);
        if (ex.stallWatch) ex.c.at = Date.now() + ctx.cfg.idleTimeoutMs;
      }
      if (chunk) await writeAll(ex.c, LAST_CHUNK);
    } else {
      await res.body?.cancel();
    }
  } catch (e) {
    if (ex.gone || e instanceof Gone) {
      ex.gone = true;
      return;
    }
    // A write to the client failed, or the app reset the stream mid-body.
    ctx.log.debug("h2c response not fully relayed", { route: ex.route.key, error: e });
    ex.gone = true;
    ex.c.close();
    return;
  }
  ex.keepClient = !close;
}
