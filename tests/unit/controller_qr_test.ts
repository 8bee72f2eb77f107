/** controller/qr.ts: the terminal QR of a join link decodes back to the link (jsQR). */
import assert from "node:assert/strict";
import jsQRModule from "jsqr";
import { qrSvg, qrTerminal } from "../../controller/qr.ts";
import { buildJoinLink, newEnrollmentToken } from "../../core/profile/mod.ts";

// jsqr is CommonJS: its default export is the function at run time, a namespace to the types.
const jsQR = jsQRModule as unknown as typeof jsQRModule.default;

/** Renders the half-block text (blocks = light) as RGBA pixels, `scale` px per module. */
function pixels(text: string, scale = 4) {
  const rows: boolean[][] = []; // true = dark
  for (const line of text.split("\n").filter((l) => l.length > 0)) {
    const top: boolean[] = [], bottom: boolean[] = [];
    for (const ch of line) {
      top.push(!(ch === "█" || ch === "▀"));
      bottom.push(!(ch === "█" || ch === "▄"));
    }
    rows.push(top, bottom);
  }
  const w = rows[0].length * scale + 8 * scale, h = rows.length * scale + 8 * scale;
  const data = new Uint8ClampedArray(w * h * 4).fill(255);
  rows.forEach((row, y) =>
    row.forEach((dark, x) => {
      if (!dark) return;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const i = (((y + 4) * scale + dy) * w + (x + 4) * scale + dx) * 4;
          data[i] = data[i + 1] = data[i + 2] = 0;
        }
      }
    })
  );
  return { data, w, h };
}

Deno.test("qr: the terminal rendering of a join link scans back to the exact link", () => {
  const link = buildJoinLink({
    ca: "ab".repeat(32),
    relay: "relay.example.net:443",
    token: newEnrollmentToken(),
  });
  const { data, w, h } = pixels(qrTerminal(link));
  const decoded = jsQR(data, w, h);
  assert.ok(decoded, "the QR does not decode");
  assert.equal(decoded.data, link);
});

Deno.test("qr: ANSI and SVG renderings are produced for the same text", () => {
  const ansi = qrTerminal("pharosvpn://enroll?x", { ansi: true });
  assert.ok(ansi.includes("\x1b["), "ANSI colour codes");
  const svg = qrSvg("pharosvpn://enroll?x");
  assert.match(svg, /^<svg[\s\S]*<\/svg>$/);
});
