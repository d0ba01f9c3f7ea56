import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, total: number, label?: string): void;
  stop(): void;
}

/**
 * A progress bar on a terminal; on a pipe (or with --json) an occasional plain line on stderr,
 * so logs stay readable and stdout stays machine-readable.
 */
export function createProgress(title: string, options: { unit?: 'bytes' | 'items' } = {}): Progress {
  const unit = options.unit ?? 'items';
  const fmt = (n: number) => (unit === 'bytes' ? formatBytes(n) : String(n));
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${title} [{bar}] {percentage}% | {doneText}/{totalText} | {label} | ETA {eta_formatted}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(done, total, label = '') {
        const payload = { doneText: fmt(done), totalText: fmt(total), label };
        if (!started) {
          bar.start(Math.max(total, 1), done, payload);
          started = true;
        } else {
          bar.setTotal(Math.max(total, 1));
          bar.update(done, payload);
        }
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let lastPrinted = 0;
  return {
    update(done, total, label = '') {
      const now = Date.now();
      if (now - lastPrinted < 2000 && done < total) return;
      lastPrinted = now;
      const pct = total > 0 ? ` (${Math.floor((100 * done) / total)}%)` : '';
      process.stderr.write(`${title}: ${fmt(done)}/${fmt(total)}${pct} ${label}\n`);
    },
    stop() {},
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}
