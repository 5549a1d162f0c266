import type { CaseRows } from '../memory/types';
import type { EpisodeRecord } from './types';

/** The memory metadata columns of an episode's steps (texts, episode, step index, source). */
export function stepRows(ep: EpisodeRecord): CaseRows {
  return {
    state: ep.steps.map((s) => s.state),
    action: ep.steps.map((s) => s.action),
    episode: ep.episode,
    step: Float64Array.from(ep.steps, (_, t) => t),
    source: ep.source,
  };
}
