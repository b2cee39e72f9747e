/** At most one line per this long about a failing target, however many streams fail meanwhile. */
const REPORT_EVERY_MS = 10_000;

/**
 * Tells the operator that the local target refuses streams: the first failure at once, then one line
 * per ten seconds with how many failed since, so a dead target cannot flood the terminal.
 */
export class TargetFailureReport {
  private lastReportAt = -Infinity;
  private unreported = 0;

  constructor(
    private readonly target: string,
    private readonly print: (line: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  failed(reason: string): void {
    this.unreported++;
    const at = this.now();
    if (at - this.lastReportAt < REPORT_EVERY_MS) return;
    const count = this.unreported;
    this.print(`cannot reach the target ${this.target} (${reason})${count > 1 ? `; ${count} streams failed since the last report` : ''}`);
    this.lastReportAt = at;
    this.unreported = 0;
  }
}
