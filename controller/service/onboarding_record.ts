/**
 * The SSH onboarding record nodes and relays both keep on their row
 * (`ssh_host_key`, `cert_serial`, `cert_pem`, `onboarding`,
 * `onboarding_step`, `onboarding_error`, `onboarded_at`), and the audited
 * mutations that move it: `<type>.pin_host_key`, `<type>.certify`,
 * `<type>.onboard_failed`, `<type>.onboarded`.
 */
import { recordRevocation } from "../revocation.ts";
import type { Actor, Service, Value } from "./service.ts";

/** What the shared mutations read from a node or relay row. */
export interface OnboardingFields {
  sshHostKey: string | null;
  certSerial: string | null;
  onboardedAt: Date | null;
}

export class OnboardingRecord<T extends OnboardingFields> {
  constructor(
    private readonly service: Service,
    private readonly type: "node" | "relay",
    /** The row a mutation started from; gone (removed meanwhile) throws `not-found`. */
    private readonly current: (row: unknown, id: string) => T,
    /** How a revocation names the row, e.g. `node edge-1`. */
    private readonly subject: (row: T) => string,
  ) {}

  /** Records the SSH host key (pinned line) seen and accepted at onboarding. */
  pinHostKey(actor: Actor, id: string, line: string): void {
    this.service.mutate(
      { actor, action: `${this.type}.pin_host_key`, target: { type: this.type, id } },
      (tx) => {
        if (this.current(tx.current, id).sshHostKey !== line) tx.update({ ssh_host_key: line });
      },
    );
  }

  /**
   * Records the certificate issued at onboarding (`cert_serial` plus
   * `changes`); a different earlier certificate is revoked in the same
   * transaction.
   */
  certify(
    actor: Actor,
    id: string,
    serial: string,
    changes: Record<string, Value>,
    notAfter?: Date,
  ): void {
    this.service.transaction(() => {
      const before = this.service.mutate(
        { actor, action: `${this.type}.certify`, target: { type: this.type, id } },
        (tx) => {
          const cur = this.current(tx.current, id);
          tx.update({ cert_serial: serial, ...changes });
          return cur;
        },
      );
      if (before.certSerial !== null && before.certSerial !== serial) {
        recordRevocation(this.service, actor, before.certSerial, this.type, {
          subject: this.subject(before),
          reason: "replaced at onboarding",
          notAfter,
        });
      }
    });
  }

  /** Onboarding stopped at `step` with `error` (a re-run resumes). */
  failed(actor: Actor, id: string, step: string, error: string): void {
    this.service.mutate(
      { actor, action: `${this.type}.onboard_failed`, target: { type: this.type, id } },
      (tx) => {
        this.current(tx.current, id);
        tx.update({
          onboarding: "failed",
          onboarding_step: step,
          onboarding_error: error.slice(0, 2000),
        });
      },
    );
  }

  /** Onboarding finished at `lastStep`; `more` adds changes of the row's own. */
  onboarded(
    actor: Actor,
    id: string,
    lastStep: string,
    more: (cur: T) => Record<string, Value> = () => ({}),
  ): void {
    this.service.mutate(
      { actor, action: `${this.type}.onboarded`, target: { type: this.type, id } },
      (tx) => {
        const cur = this.current(tx.current, id);
        tx.update({
          onboarding: "done",
          onboarding_step: lastStep,
          onboarding_error: null,
          onboarded_at: cur.onboardedAt?.toISOString() ?? tx.now,
          ...more(cur),
        });
      },
    );
  }
}
