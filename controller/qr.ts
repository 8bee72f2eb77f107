/**
 * QR codes of join links (CONTRACTS.md §4.8: the link string itself, error
 * correction M): for the terminal (`cox tickets create`) and as SVG (the
 * admin API). Drawn by uqr; nothing here encodes QR by hand.
 */
import { renderANSI, renderSVG, renderUnicodeCompact } from "uqr";

const ECC = "M" as const;

/**
 * The QR as text for a terminal: two modules per character (half blocks).
 * Without `ansi`, LIGHT modules are the blocks: made for the usual
 * light-on-dark terminal. With `ansi`, colours are forced (black on
 * white), so any terminal theme shows a scannable code.
 */
export function qrTerminal(text: string, opts: { ansi?: boolean } = {}): string {
  const out = opts.ansi
    ? renderANSI(text, { ecc: ECC, border: 2 })
    : renderUnicodeCompact(text, { ecc: ECC, border: 2 });
  return out.endsWith("\n") ? out : out + "\n";
}

/** The QR as a standalone SVG document (8 px per module, 4-module quiet zone). */
export function qrSvg(text: string): string {
  return renderSVG(text, { ecc: ECC, border: 4, pixelSize: 8 });
}
