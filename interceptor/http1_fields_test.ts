import assert from "node:assert/strict";
import {
  CONTENT_LENGTH,
  contentLengthOf,
  fieldKind,
  fieldKindAt,
  HeaderList,
  HttpError,
  MAX_FIELDS,
  NONE,
  readFields,
  TRANSFER_ENCODING,
} from "./http1_fields.ts";

const enc = new TextEncoder();

Deno.test("fieldKindAt (bytes, any case) agrees with fieldKind for every table name and near misses", () => {
  const names = [
    "content-length",
    "Content-Length",
    "TRANSFER-ENCODING",
    "transfer-encodinG",
    "connection",
    "keep-alive",
    "te",
    "x-keda-http-cold-start",
    "x-forwarded-for",
    "host",
    "content-lengtx",
    "transfer-encoding ",
    "hostt",
    "x-app",
  ];
  for (const n of names) {
    const b = enc.encode(`..${n}`);
    assert.equal(fieldKindAt(b, 2, n.length), fieldKind(n.toLowerCase()), n);
  }
  assert.equal(fieldKind("content-length"), CONTENT_LENGTH);
  assert.equal(fieldKind("transfer-encoding"), TRANSFER_ENCODING);
  assert.equal(fieldKind("transfer-encoding "), NONE);
});

Deno.test("contentLengthOf takes 1*DIGIT only", () => {
  assert.equal(contentLengthOf("0"), 0);
  assert.equal(contentLengthOf("0042"), 42);
  assert.equal(contentLengthOf("999999999999999"), 999999999999999);
  for (const bad of ["", "+5", "-1", "0x5", "5 ", "5,5", "1e3", "9999999999999999"]) {
    assert.equal(contentLengthOf(bad), -1, JSON.stringify(bad));
  }
});

Deno.test("readFields: one field-line grammar, strict", () => {
  const h = new HeaderList();
  const end = readFields("X\r\nA: 1\r\nB:\t two \r\n\r\nrest", 3, 400, false, h);
  assert.equal(end, 21);
  assert.deepEqual(h.fields, ["A", "a", "1", "B", "b", "two"]);
  const bad = [
    "A : 1\r\n\r\n",
    " A: 1\r\n\r\n",
    "A: 1\r\n folded\r\n\r\n",
    "A 1\r\n\r\n",
    "A: \x00\r\n\r\n",
    "A: a\rb\r\n\r\n",
    "A: \x0b\r\n\r\n",
    "A@: 1\r\n\r\n",
    "A: 1\n\r\n",
  ];
  for (const b of bad) {
    assert.throws(
      () => readFields(b, 0, 400, false, new HeaderList()),
      (e) => e instanceof HttpError && e.status === 400,
      JSON.stringify(b),
    );
  }
  assert.equal(readFields("A: 1\n\n", 0, 502, true, new HeaderList()), 6);
});

Deno.test("readFields: more than MAX_FIELDS fields is 431 for a request, the caller's status otherwise", () => {
  const many = "A: 1\r\n".repeat(MAX_FIELDS);
  assert.equal(readFields(many + "\r\n", 0, 400, false, new HeaderList()), many.length + 2);
  const tooMany = many + "B: 2\r\n\r\n";
  for (const [status, want] of [[400, 431], [502, 502]]) {
    assert.throws(
      () => readFields(tooMany, 0, status!, false, new HeaderList()),
      (e) => e instanceof HttpError && e.status === want,
    );
  }
});
