/**
 * Progress on stderr: a one-line bar redrawn in place on a TTY, plain lines (at most every few
 * seconds) otherwise, nothing with --json.
 */
import type { Progress } from '../agent/runner';

export class ProgressReporter {
  private lastPlain = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly write: (s: string) => void,
    private readonly mode: 'tty' | 'plain' | 'off',
    private readonly label: string,
  ) {}

  update(p: Progress): void {
    if (this.mode === 'off') return;
    const now = Date.now();
    const pct = p.episodes > 0 ? Math.min(1, p.episode / p.episodes) : 1;
    let text: string;
    if (p.phase === 'eval') {
      text = `${this.label} eval ${p.split} ${p.game}/${p.games}  success ${(100 * p.successRate).toFixed(1)}%`;
    } else if (p.phase === 'demos') {
      text = `${this.label} demos ${p.episode}/${p.episodes}  memory ${fmtCount(p.memory)}`;
    } else {
      text = `${this.label} episode ${p.episode}/${p.episodes}  success ${(100 * p.successRate).toFixed(1)}%  memory ${fmtCount(p.memory)}  ${p.episodesPerSecond.toFixed(2)} ep/s`;
    }
    if (this.mode === 'tty') {
      if (now - this.lastDraw < 80 && pct < 1) return;
      this.lastDraw = now;
      const width = 24;
      const fill = Math.round(pct * width);
      const bar = p.phase === 'train' ? `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ` : '';
      this.write(`\r\x1b[2K${bar}${text}`);
      this.drawn = true;
    } else {
      const last = p.phase !== 'eval' ? p.episode === p.episodes : p.game === p.games;
      if (now - this.lastPlain < 3000 && !last) return;
      this.lastPlain = now;
      this.write(text + '\n');
    }
  }

  /** Ends the in-place line (before printing anything else). */
  done(): void {
    if (this.mode === 'tty' && this.drawn) this.write('\n');
    this.drawn = false;
  }
}

export function fmtCount(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}
