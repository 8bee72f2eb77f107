/**
 * The rule preview as text. The API sends the canonical PostUp/PostDown
 * rule set of a node's policy; accept a string, a list of lines, or an
 * object of named lists ({postUp: [...], postDown: [...]}).
 */
const HEADINGS: Record<string, string> = {
  pre_up: "PreUp",
  post_up: "PostUp",
  post_down: "PostDown",
  unresolved: "filled in on the node (egress interface)",
};

export function ruleText(preview: unknown): string {
  if (preview === null || preview === undefined || typeof preview === "boolean") return "";
  if (typeof preview === "string") return preview;
  if (Array.isArray(preview)) return preview.map((l) => ruleText(l)).join("\n");
  if (typeof preview === "object") {
    const o = preview as Record<string, unknown>;
    const inner = o.rule_preview ?? o.rulePreview ?? o.preview;
    if (inner !== undefined) return ruleText(inner);
    return Object.entries(o)
      .map(([k, v]) => [k, ruleText(v)])
      .filter(([, text]) => text !== "")
      .map(([k, text]) => `# ${HEADINGS[k] ?? k}\n${text}`)
      .join("\n\n");
  }
  return String(preview);
}
