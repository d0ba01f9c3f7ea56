/** Wakes every waiter; each re-checks its own condition (no lost wake-ups on one thread). */
export class Wakeup {
  private waiters: (() => void)[] = [];

  /** Resolves at the next notify, or after `timeoutMs` when given (the waiter is then forgotten: none pile up). */
  wait(timeoutMs?: number): Promise<void> {
    return new Promise((res) => {
      if (timeoutMs === undefined) {
        this.waiters.push(res);
        return;
      }
      const wake = () => {
        clearTimeout(timer);
        res();
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== wake);
        res();
      }, timeoutMs);
      this.waiters.push(wake);
    });
  }

  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const res of w) res();
  }
}
