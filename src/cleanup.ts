// The one cleanup stack (load's rollback, the demo, the benchmarks): steps run
// last-added first, every step runs even when one before it throws, and a
// stack that ran is empty (running it again does nothing).
import { child } from './log.js';

const log = child('cleanup');

export class CleanupStack {
  private readonly steps: Array<() => void> = [];
  constructor(private readonly onError: (e: unknown) => void = (e) => log.warn({ err: (e as Error).message }, 'cleanup step failed')) {}

  add(step: () => void): void {
    this.steps.push(step);
  }

  run(): void {
    while (this.steps.length) {
      const step = this.steps.pop() as () => void;
      try {
        step();
      } catch (e) {
        this.onError(e);
      }
    }
  }

  /** Keep what was done: drop the steps without running them (load succeeded). */
  forget(): void {
    this.steps.length = 0;
  }
}
