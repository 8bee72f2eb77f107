/** @jsxImportSource preact */
/** Copies a text to the clipboard; disabled until hydrated (it needs JavaScript). */
import { useEffect, useState } from "preact/hooks";

export interface CopyButtonProps {
  text: string;
  label: string;
}

export function CopyButton({ text, label }: CopyButtonProps) {
  const [ready, setReady] = useState(false);
  const [done, setDone] = useState<"" | "copied" | "failed">("");
  useEffect(() => setReady(true), []);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone("copied");
    } catch {
      setDone("failed");
    }
  };
  return (
    <span>
      <button type="button" class="secondary" disabled={!ready} onClick={copy} data-copy={text}>
        {label}
      </button>{" "}
      <span role="status" class="muted">
        {done === "copied" ? "Copied." : done === "failed" ? "Copy failed: select the text." : ""}
      </span>
    </span>
  );
}
