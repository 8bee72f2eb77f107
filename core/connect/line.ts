/**
 * The CONNECT line of control-plane egress (CONTRACTS.md §3.5): ASCII
 * `host:port` + "\n", IPv6 hosts in brackets, at most 255 bytes before the
 * newline, port decimal 1..65535. There is no reply byte. Everything after
 * the newline is payload and is handed back untouched.
 */
import { joinHostPort } from "../net/mod.ts";
import { checkHost, ConnectError, type HostKind } from "./host.ts";

/** Most bytes allowed before the newline. */
export const MAX_CONNECT_LINE = 255;
const NEWLINE = 0x0a;

export interface ConnectTarget {
  /** Host without brackets. */
  host: string;
  port: number;
  kind: HostKind;
}

function checkPort(text: string): number {
  if (text.length === 0) {
    throw new ConnectError("missing-port", "CONNECT target has no port after ':'");
  }
  if (!/^[0-9]+$/.test(text) || (text.length > 1 && text[0] === "0")) {
    throw new ConnectError("bad-port", `CONNECT port "${text}" is not a plain decimal number`);
  }
  const port = Number(text);
  if (port < 1 || port > 65535) {
    throw new ConnectError("port-out-of-range", `CONNECT port ${port} is outside 1..65535`);
  }
  return port;
}

function checkCharacters(line: string): void {
  if (line.length > MAX_CONNECT_LINE) {
    throw new ConnectError("too-long", `CONNECT line is longer than ${MAX_CONNECT_LINE} bytes`);
  }
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      throw new ConnectError(
        "bad-character",
        `CONNECT line has byte 0x${
          c.toString(16).padStart(2, "0")
        } at offset ${i}; only printable ASCII without spaces is allowed`,
      );
    }
  }
}

/**
 * Parses the text before the newline (no newline included). Throws
 * ConnectError with the code naming the fault.
 */
export function parseConnectTarget(line: string): ConnectTarget {
  if (typeof line !== "string") {
    throw new ConnectError("bad-argument", "CONNECT line must be a string");
  }
  checkCharacters(line);
  let host: string;
  let portText: string;
  if (line.startsWith("[")) {
    const close = line.indexOf("]");
    if (close < 0) {
      throw new ConnectError("bad-brackets", "CONNECT target opens '[' without a closing ']'");
    }
    host = line.slice(1, close);
    const after = line.slice(close + 1);
    if (after.length === 0) throw new ConnectError("missing-port", "CONNECT target has no ':port'");
    if (after[0] !== ":") {
      throw new ConnectError("bad-brackets", "CONNECT target must continue with ':' after ']'");
    }
    portText = after.slice(1);
    if (host.length === 0) throw new ConnectError("empty-host", "CONNECT target has an empty host");
    if (!host.includes(":")) {
      throw new ConnectError("bad-brackets", "CONNECT target brackets are only for IPv6 addresses");
    }
  } else {
    if (line.includes("[") || line.includes("]")) {
      throw new ConnectError("bad-brackets", "CONNECT target has a stray '[' or ']'");
    }
    const colon = line.lastIndexOf(":");
    if (colon < 0) throw new ConnectError("missing-port", "CONNECT target has no ':port'");
    host = line.slice(0, colon);
    portText = line.slice(colon + 1);
    if (host.includes(":")) {
      throw new ConnectError(
        "unbracketed-ipv6",
        "CONNECT target: an IPv6 host must be written in brackets",
      );
    }
  }
  const kind = checkHost(host);
  return { host, port: checkPort(portText), kind };
}

/** `host:port`, bracketing IPv6 hosts. Validates like parseConnectTarget. */
export function formatConnectTarget(host: string, port: number): string {
  if (typeof host !== "string") {
    throw new ConnectError("bad-argument", "CONNECT host must be a string");
  }
  if (!Number.isInteger(port)) {
    throw new ConnectError("bad-port", `CONNECT port ${String(port)} is not an integer`);
  }
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  const text = joinHostPort(bare, port);
  parseConnectTarget(text);
  return text;
}

/** The CONNECT line for `host:port`, newline included. */
export function encodeConnect(host: string, port: number): Uint8Array {
  return new TextEncoder().encode(formatConnectTarget(host, port) + "\n");
}

function decodeAscii(bytes: Uint8Array, length: number): string {
  let s = "";
  for (let i = 0; i < length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

/**
 * Reads a CONNECT line from `reader`. Bytes the reader delivered after the
 * newline are returned as `rest` (they are the start of the payload; the rest
 * follows from the same reader). Fails as soon as the line is too long or a
 * forbidden byte appears, without waiting for more input; throws
 * "no-newline" if the input ends first.
 */
export async function readConnectLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<{ target: ConnectTarget; rest: Uint8Array }> {
  const line = new Uint8Array(MAX_CONNECT_LINE);
  let length = 0;
  for (;;) {
    const r = await reader.read();
    if (r.done) {
      throw new ConnectError(
        "no-newline",
        `CONNECT line ended after ${length} bytes without a newline`,
      );
    }
    const chunk = r.value;
    if (!(chunk instanceof Uint8Array)) {
      throw new ConnectError("bad-argument", "CONNECT input must produce Uint8Array chunks");
    }
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (c === NEWLINE) {
        const target = parseConnectTarget(decodeAscii(line, length));
        return { target, rest: chunk.slice(i + 1) };
      }
      if (length === MAX_CONNECT_LINE) {
        throw new ConnectError(
          "too-long",
          `CONNECT line has no newline within ${MAX_CONNECT_LINE} bytes`,
        );
      }
      if (c < 0x21 || c > 0x7e) {
        throw new ConnectError(
          "bad-character",
          `CONNECT line has byte 0x${c.toString(16).padStart(2, "0")} at offset ${length}`,
        );
      }
      line[length++] = c;
    }
  }
}

/**
 * Reads the CONNECT line off `readable` and returns the target and the
 * payload stream (the bytes after the newline, then everything else). On a
 * malformed line the source is cancelled and the ConnectError is thrown.
 */
export async function splitConnectStream(
  readable: ReadableStream<Uint8Array>,
): Promise<{ target: ConnectTarget; payload: ReadableStream<Uint8Array> }> {
  const reader = readable.getReader();
  let first: Awaited<ReturnType<typeof readConnectLine>>;
  try {
    first = await readConnectLine(reader);
  } catch (e) {
    await reader.cancel(e).catch(() => {});
    throw e;
  }
  let pending: Uint8Array | null = first.rest.length > 0 ? first.rest : null;
  const payload = new ReadableStream<Uint8Array>(
    {
      async pull(c) {
        if (pending !== null) {
          c.enqueue(pending);
          pending = null;
          return;
        }
        const r = await reader.read();
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
  return { target: first.target, payload };
}
