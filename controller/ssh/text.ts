/**
 * Text from the remote side (command output) or from the operator, made
 * fit for one line of a terminal or a log: line breaks become " | ", other
 * control characters (escape sequences included) become "?", and long text
 * keeps its end, where the reason for a failure usually is.
 */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function oneLine(text: string, max = 600): string {
  const t = text.replace(/\s*[\r\n\u2028\u2029]+\s*/g, " | ").replace(/\t/g, " ").replace(
    CONTROL,
    "?",
  )
    .trim()
    .replace(/^\| |\s\|$/g, "");
  return t.length <= max ? t : "…" + t.slice(-max);
}
