/**
 * Dead letters grouped by what went wrong, the way an operator triages them
 * (Wolverine's grouping by exception type, Sentry's fingerprints): one group
 * per event type + error class + first application stack frame, with counts
 * and first/last seen; and the bulk actions on a selection or a whole group.
 * `events dlq groups|replay|discard`, the console and the admin JSON routes
 * all go through these functions.
 */
import { createHash } from 'node:crypto';
import type { Database, Sql } from '../db';
import { OutboxValidationError } from '../errors';
import { DeadLetterNotFoundError, DeadLetterStateError, discardDeadLetter, listDeadLetters, replayDeadLetter, type DeadLetterRow } from './dead-letters';

export interface DeadLetterFingerprint {
  /** 12 hex characters of sha256(type, error class, frame): stable across processes and restarts. */
  fingerprint: string;
  eventType: string | null;
  /** `TypeError`, `PayloadSchemaError`, … from the first line of the stack (or the message). */
  errorClass: string;
  /** First stack frame outside node internals, node_modules and the pipeline itself; null when none. */
  frame: string | null;
}

export interface DeadLetterGroup extends DeadLetterFingerprint {
  count: number;
  /** Consumer groups the letters came from. */
  groups: string[];
  firstSeen: Date;
  lastSeen: Date;
  /** Error message of the newest letter. */
  sampleMessage: string;
  /** Ids of the letters, oldest first (replay keeps this order). */
  ids: string[];
}

const ERROR_CLASS = /^([A-Za-z_$][\w$.]*)(?::|$)/;
/** Without a stack only a message that starts like one names a class (`TypeError: …`). */
const MESSAGE_ERROR_CLASS = /^([A-Za-z_$][\w$.]*(?:Error|Exception)):/;
/** Frames that say nothing about where the application failed. */
const PLUMBING_FRAME = /(node:internal|node_modules|\(node:|\/packages\/outbox\/(src|dist)\/|<anonymous>)/;

/** The fingerprint of one letter. Pure. */
export function fingerprintOf(letter: Pick<DeadLetterRow, 'eventType' | 'errorMessage' | 'errorStack'>): DeadLetterFingerprint {
  const stackLines = (letter.errorStack ?? '').split('\n');
  const errorClass = ERROR_CLASS.exec(stackLines[0]?.trim() ?? '')?.[1] ?? MESSAGE_ERROR_CLASS.exec(letter.errorMessage.trim())?.[1] ?? 'Error';
  const frame =
    stackLines
      .map((line) => line.trim())
      .filter((line) => line.startsWith('at '))
      .find((line) => !PLUMBING_FRAME.test(line))
      // Columns move with every edit of the line; file, function and line number identify the place.
      ?.replace(/^at /, '')
      .replace(/:(\d+):\d+(\)?)$/, ':$1$2') ?? null;
  const fingerprint = createHash('sha256')
    .update(`${letter.eventType ?? ''}\n${errorClass}\n${frame ?? ''}`)
    .digest('hex')
    .slice(0, 12);
  return { fingerprint, eventType: letter.eventType, errorClass, frame };
}

/** Groups of the dead letters with `status` (default `dead`), largest first. Read-only; looks at the newest 10,000. */
export async function listDeadLetterGroups(sql: Sql, options: { status?: DeadLetterRow['status']; group?: string } = {}): Promise<DeadLetterGroup[]> {
  const letters = await listDeadLetters(sql, { status: options.status ?? 'dead', group: options.group, limit: 10_000 });
  const groups = new Map<string, DeadLetterGroup>();
  for (const letter of [...letters].reverse()) {
    const print = fingerprintOf(letter);
    let group = groups.get(print.fingerprint);
    if (!group) {
      group = { ...print, count: 0, groups: [], firstSeen: letter.deadLetteredAt, lastSeen: letter.deadLetteredAt, sampleMessage: letter.errorMessage, ids: [] };
      groups.set(print.fingerprint, group);
    }
    group.count += 1;
    group.ids.push(letter.id);
    if (!group.groups.includes(letter.groupName)) group.groups.push(letter.groupName);
    if (letter.deadLetteredAt < group.firstSeen) group.firstSeen = letter.deadLetteredAt;
    if (letter.deadLetteredAt >= group.lastSeen) {
      group.lastSeen = letter.deadLetteredAt;
      group.sampleMessage = letter.errorMessage;
    }
  }
  return [...groups.values()].sort((a, b) => b.count - a.count || b.lastSeen.getTime() - a.lastSeen.getTime());
}

/** The dead letters (status `dead`) of one fingerprint, oldest first; empty when none. Read-only. */
export async function deadLettersOfFingerprint(sql: Sql, fingerprint: string): Promise<DeadLetterRow[]> {
  const letters = await listDeadLetters(sql, { status: 'dead', limit: 10_000 });
  return letters.filter((l) => fingerprintOf(l).fingerprint === fingerprint).reverse();
}

export interface BulkOutcome {
  id: string;
  ok: boolean;
  /** Replay: the outbox row the event was re-enqueued as. */
  outboxId?: string;
  /** Why it was refused (not found, not `dead`, not rebuildable). */
  error?: string;
}

/**
 * Replays (`action` 'replay') or discards each letter in `ids`, in the order
 * given (pass oldest first so replayed events keep their relative order),
 * each in its own transaction exactly as `replayDeadLetter` /
 * `discardDeadLetter`. A typed refusal of one letter is reported and the rest
 * go on; any other error stops the run and propagates.
 */
export async function resolveDeadLetters(db: Database, action: 'replay' | 'discard', ids: readonly string[], options: { by: string }): Promise<BulkOutcome[]> {
  const outcomes: BulkOutcome[] = [];
  for (const id of ids) {
    try {
      if (action === 'replay') {
        const result = await replayDeadLetter(db, id, options);
        outcomes.push({ id, ok: true, outboxId: result.outboxId });
      } else {
        await discardDeadLetter(db, id, options);
        outcomes.push({ id, ok: true });
      }
    } catch (error) {
      if (!(error instanceof DeadLetterStateError || error instanceof DeadLetterNotFoundError || error instanceof OutboxValidationError)) throw error;
      outcomes.push({ id, ok: false, error: error.message });
    }
  }
  return outcomes;
}
