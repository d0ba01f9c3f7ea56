/** Wakes every waiter; each re-checks its own condition (no lost wake-ups on one thread). */
export class Wakeup {
  private waiters: (() => void)[] = [];

  wait(): Promise<void> {
    return new Promise((res) => this.waiters.push(res));
  }

  notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const res of w) res();
  }
}
