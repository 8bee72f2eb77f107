/** Reads a QR code back from a PNG screenshot (pngjs decodes, jsqr finds and reads the code). */
import { Buffer } from "node:buffer";
import jsQRModule from "jsqr";
import { PNG } from "pngjs";

type Decode = (
  data: Uint8ClampedArray,
  width: number,
  height: number,
) => { data: string } | null;
// jsqr is CommonJS with `export default` in its types: the call target differs by loader.
const jsQR: Decode = (jsQRModule as unknown as { default?: Decode }).default ??
  (jsQRModule as unknown as Decode);

export function decodeQrPng(png: Uint8Array): string | null {
  const img = PNG.sync.read(Buffer.from(png));
  return jsQR(new Uint8ClampedArray(img.data), img.width, img.height)?.data ?? null;
}
