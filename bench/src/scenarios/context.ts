/** What every scenario receives. */
import type { BenchEnvironment } from '../bench-environment';
import type { AppsContext } from '../petcover-apps';
import type { BenchProfile } from '../profile';

export interface ScenarioContext {
  env: BenchEnvironment;
  profile: BenchProfile;
  apps: AppsContext;
  /** Progress line on stderr (the table goes to stdout). */
  log(message: string): void;
}

/** Bytes → MiB with one decimal, or null. */
export function mebibytes(bytes: number | null): number | null {
  return bytes === null ? null : Math.round((bytes / (1024 * 1024)) * 10) / 10;
}
