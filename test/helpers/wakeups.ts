/** Readers waiting, with a timeout, for a socket's next bytes or its close; `wake` releases them all. */
export class Wakeups {
  private readonly waiting = new Set<() => void>();

  wait(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiting.add(done);
    });
  }

  wake(): void {
    for (const waiter of [...this.waiting]) waiter();
  }
}
