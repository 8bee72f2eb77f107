/**
 * Deflate and bounded inflate over the web-standard CompressionStream and
 * DecompressionStream. Inflating stops as soon as the output would pass a
 * limit, so a small hostile input cannot expand into a large allocation.
 */
import { concat } from "../encoding.ts";
import { PharosError } from "../errors.ts";

/** `deflate-raw` = RFC 1951; `deflate` = RFC 1950 zlib stream. */
export type DeflateFormat = "deflate-raw" | "deflate";

/** Error of {@link inflateBounded}: `inflate-too-large` or `inflate-corrupt`. */
export class CompressionError extends PharosError {}

/** Compresses `data` in the given format. */
export async function deflate(data: Uint8Array, format: DeflateFormat): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new CompressionStream(format));
  return concat(...await Array.fromAsync(stream));
}

/**
 * Decompresses `data`, failing with `inflate-too-large` once more than
 * `maxBytes` come out, and `inflate-corrupt` on invalid or trailing data.
 */
export async function inflateBounded(
  data: Uint8Array,
  format: DeflateFormat,
  maxBytes: number,
): Promise<Uint8Array> {
  const reader = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
    .pipeThrough(new DecompressionStream(format)).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw new CompressionError("inflate-too-large", `inflated data exceeds ${maxBytes} bytes`);
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof CompressionError) throw e;
    throw new CompressionError(
      "inflate-corrupt",
      `compressed data is corrupt: ${(e as Error).message}`,
    );
  }
  return concat(...chunks);
}
