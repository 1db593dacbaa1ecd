/**
 * The console's pages as preact components (htm tagged templates, escaped by
 * preact-render-to-string). Modelled on River UI and the pg-boss dashboard:
 * the first thing on screen is what is stuck, why, and the one action that
 * fixes it. Actions are plain forms carrying the CSRF field; in read-only
 * mode they are not rendered at all.
 */
import {
  traceIdOf,
  type DeadLetterGroup,
  type DeadLetterRow,
  type EventJourney,
  type EventsStatus,
  type LeaseEntry,
  type LookupResult,
  type NodeStatus,
  type ParkedKeyRef,
  type ParkedKeyRow,
  type StatusProblem,
} from '@petcover/outbox';
import { html, type ComponentChildren, type VNode } from '../pages/render';
import { CONSOLE_PATH, type ConsoleMode } from './session';

export interface ViewContext {
  mode: ConsoleMode;
  csrfToken: string;
  /** One-line outcome of the last action (after a redirect). */
  notice?: string;
}

export const CONSOLE_CSS_PATH = `${CONSOLE_PATH}/console.css`;

type Section = 'overview' | 'events' | 'dead-letters' | 'parked-keys' | 'nodes';

const SECTIONS: Array<[Section, string, string]> = [
  ['overview', 'Overview', CONSOLE_PATH],
  ['events', 'Event lookup', `${CONSOLE_PATH}/events`],
  ['dead-letters', 'Dead letters', `${CONSOLE_PATH}/dead-letters`],
  ['parked-keys', 'Parked keys', `${CONSOLE_PATH}/parked-keys`],
  ['nodes', 'Nodes & leases', `${CONSOLE_PATH}/nodes`],
];

function csrf(ctx: ViewContext): VNode {
  return html`<input type="hidden" name="_csrf" value=${ctx.csrfToken} />`;
}

/** The frame of every signed-in page: header with navigation, mode and sign-out. */
export function consoleLayout(ctx: ViewContext, section: Section, body: ComponentChildren): VNode {
  return html`<link rel="stylesheet" href=${CONSOLE_CSS_PATH} />
    <header class="console-bar">
      <div class="inner">
        <a class="brand" href=${CONSOLE_PATH}>PetCover events</a>
        <nav aria-label="Console">
          ${SECTIONS.map(([key, label, href]) => html`<a href=${href} aria-current=${key === section ? 'page' : undefined}>${label}</a>`)}
        </nav>
        <div class="session">
          ${ctx.mode === 'read-only' ? html`<span class="pill muted" data-testid="read-only">read-only</span>` : null}
          <form method="post" action=${`${CONSOLE_PATH}/sign-out`}>${csrf(ctx)}<button class="link" type="submit">Sign out</button></form>
        </div>
      </div>
    </header>
    <main id="main" class="console">
      ${ctx.notice ? html`<div class="banner ok" role="status">${ctx.notice}</div>` : null}
      ${body}
    </main>`;
}

export function signInPage(options: { csrfToken: string; next: string; error?: string }): VNode {
  return html`<link rel="stylesheet" href=${CONSOLE_CSS_PATH} />
    <main id="main" class="console narrow">
      <h1>PetCover events console</h1>
      <p class="hint">Sign in with the admin key (ADMIN_API_KEY), or the read-only key.</p>
      ${options.error ? html`<div class="banner error" role="alert">${options.error}</div>` : null}
      <form method="post" action=${`${CONSOLE_PATH}/sign-in`}>
        <input type="hidden" name="_csrf" value=${options.csrfToken} />
        <input type="hidden" name="next" value=${options.next} />
        <div class="field">
          <label for="key">Admin key</label>
          <input id="key" name="key" type="password" autocomplete="current-password" required />
        </div>
        <button type="submit">Sign in</button>
      </form>
    </main>`;
}

export function messagePage(title: string, message: string): VNode {
  return html`<link rel="stylesheet" href=${CONSOLE_CSS_PATH} />
    <main id="main" class="console narrow">
      <h1>${title}</h1>
      <div class="banner error" role="alert">${message}</div>
      <p><a href=${CONSOLE_PATH}>Back to the console</a></p>
    </main>`;
}

// ---- small pieces ----------------------------------------------------------

function age(seconds: number | null): string {
  if (seconds === null) return '–';
  if (seconds < 90) return `${Math.round(seconds)}s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function time(value: string | Date | null): VNode | string {
  if (value === null) return '–';
  const iso = typeof value === 'string' ? value : value.toISOString();
  return html`<time datetime=${iso} title=${iso}>${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`;
}

function leaseCell(lease: EventsStatus['streams'][number]['publisherLease']): VNode {
  if (!lease) return html`<span class="muted">none</span>`;
  const state =
    lease.owner === 'dead' || lease.owner === 'unregistered'
      ? html`<span class="pill bad">${lease.owner === 'dead' ? 'owner dead' : 'owner never registered'}</span>`
      : lease.expired
        ? html`<span class="pill warn">expired</span>`
        : lease.ownerRenewing
          ? html`<span class="pill good">alive</span>`
          : html`<span class="pill warn">not renewed</span>`;
  return html`<div><code>${lease.ownerId}</code></div><div>${state} <span class="muted">token ${lease.fencingToken}</span></div>`;
}

function problemKindLabel(kind: string): string {
  return kind.replace(/_/g, ' ');
}

function problemList(problems: StatusProblem[]): VNode {
  if (problems.length === 0) {
    return html`<div class="banner ok" data-testid="healthy"><strong>Healthy.</strong> No problem found.</div>`;
  }
  return html`<section aria-labelledby="problems-title" class="problems">
    <h2 id="problems-title">${problems.length} problem${problems.length === 1 ? '' : 's'}</h2>
    <ul>
      ${problems.map(
        (p) => html`<li class="problem" data-kind=${p.kind}>
          <div class="problem-head"><span class="pill bad">${problemKindLabel(p.kind)}</span> ${p.stream ? html`<code>${p.stream}</code>` : null}</div>
          <p>${p.message}</p>
          <p class="fix"><strong>Fix:</strong> ${p.fix}</p>
          ${p.kind === 'halted_keys' ? html`<p><a href=${`${CONSOLE_PATH}/parked-keys`} data-testid="open-parked-keys">Open parked keys</a> to release or discard from here.</p>` : null}
        </li>`,
      )}
    </ul>
  </section>`;
}

// ---- Overview --------------------------------------------------------------

export function overviewPage(ctx: ViewContext, status: EventsStatus, options: { refresh: boolean; intervalSeconds: number }): VNode {
  const live = html`<div
    id="live"
    hx-get=${options.refresh ? CONSOLE_PATH : undefined}
    hx-trigger=${options.refresh ? `every ${options.intervalSeconds}s` : undefined}
    hx-select="#live"
    hx-swap="outerHTML"
  >
    <p class="muted small">
      Checked ${time(status.checkedAt)} · database ${status.database.ok ? html`<code>${status.database.name}</code>` : html`<strong class="bad-text">unreachable</strong>`}
      · Redis ${status.redis.ok ? 'ok' : html`<strong class="bad-text">unreachable</strong>`}
      ${status.nodes ? html` · ${status.nodes.filter((n) => n.alive).length} live node(s)` : null}
    </p>
    ${problemList(status.problems)}
    <h2>Streams</h2>
    ${status.streams.length === 0 ? html`<p class="muted">No streams yet: no outbox rows, leases or Redis streams.</p>` : null}
    <div class="table-wrap">
      <table class="grid" data-testid="streams">
        <thead>
          <tr><th scope="col">Stream</th><th scope="col">Queued</th><th scope="col">Oldest</th><th scope="col">Publisher lease</th><th scope="col">Redis length</th><th scope="col">Groups: lag / pending / oldest pending</th><th scope="col">Dead letters</th></tr>
        </thead>
        <tbody>
          ${status.streams.map((s) => {
            const flagged = status.problems.some((p) => p.stream === s.stream);
            const dead = s.deadLetters.reduce((n, d) => n + d.count, 0);
            return html`<tr class=${flagged ? 'flagged' : undefined} data-stream=${s.stream}>
              <th scope="row"><code>${s.stream}</code>${s.partitionCount > 1 ? html`<div class="muted small">${s.partitionCount} partitions</div>` : null}</th>
              <td class="num">${s.outbox.unpublished}</td>
              <td class="num">${age(s.outbox.oldestUnpublishedAgeSeconds)}</td>
              <td>${leaseCell(s.publisherLease)}</td>
              <td class="num">${s.redis === null ? '?' : s.redis.reduce((n, p) => n + p.length, 0)}</td>
              <td>
                ${s.groups.length === 0 ? html`<span class="muted">no group</span>` : null}
                ${s.groups.map(
                  (g) => html`<div><strong>${g.group}</strong> <span class="num">${g.lag ?? '?'} / ${g.pending} / ${age(g.oldestPendingIdleSeconds)}</span>
                    ${g.partitions.length > 1
                      ? html`<details><summary class="small">${g.partitions.length} partitions</summary>
                          <ul class="plain small">${g.partitions.map((p) => html`<li><code>${p.partition}</code>: lag ${p.lag ?? '?'}, pending ${p.pending}, lease ${p.lease ? p.lease.ownerId : 'none'}${p.lease && p.lease.owner !== 'alive' && p.lease.owner !== 'unknown' ? ` (${p.lease.owner})` : ''}</li>`)}</ul>
                        </details>`
                      : null}
                  </div>`,
                )}
              </td>
              <td class="num">${dead > 0 ? html`<a href=${`${CONSOLE_PATH}/dead-letters`}>${dead}</a>` : '0'}</td>
            </tr>`;
          })}
        </tbody>
      </table>
    </div>
  </div>`;
  return consoleLayout(
    ctx,
    'overview',
    html`<div class="title-row">
        <h1>Overview</h1>
        <p class="refresh">
          ${options.refresh
            ? html`Refreshes every ${options.intervalSeconds}s · <a href=${`${CONSOLE_PATH}?refresh=off`} data-testid="pause">Pause</a>`
            : html`Auto-refresh paused · <a href=${CONSOLE_PATH} data-testid="resume">Resume</a>`}
        </p>
      </div>
      ${live}`,
  );
}

// ---- Event lookup ----------------------------------------------------------

const GROUP_STATE_LABEL = { waiting: 'waiting', delivered: 'delivered, not settled', handled: 'handled', dead: 'dead letter' } as const;

/** The trace the event belongs to (its traceparent header), to search in the tracing UI. */
function traceLine(e: EventJourney): VNode | null {
  const traceId = traceIdOf(e.headers);
  return traceId ? html` · trace <code data-trace-id=${traceId} title="search this trace id in Jaeger or your tracing backend">${traceId}</code>` : null;
}

function journey(e: EventJourney): VNode {
  return html`<article class="journey" data-event-id=${e.eventId}>
    <h2>${e.type} <code class="small">${e.eventId}</code></h2>
    <p class="muted small">stream <code>${e.stream}</code> · key <a href=${`${CONSOLE_PATH}/events?q=${encodeURIComponent(e.partitionKey)}`}><code>${e.partitionKey}</code></a>${traceLine(e)}</p>
    <ol class="timeline">
      <li class="done"><strong>Outbox</strong> row ${e.outboxId}, created ${time(e.createdAt)}</li>
      <li class=${e.publishedAt ? 'done' : 'pending'}><strong>Published</strong> ${e.publishedAt ? time(e.publishedAt) : 'not yet'}</li>
      <li class=${e.redisEntryId ? 'done' : 'pending'}><strong>Redis</strong> ${e.redisEntryId ? html`entry <code>${e.redisEntryId}</code> in <code>${e.partitionStream}</code>` : 'no entry found (not published yet, trimmed, or Redis unreachable)'}</li>
      ${e.groups.length === 0 ? html`<li class="pending"><strong>Groups</strong> no consumer group reads this stream yet</li>` : null}
      ${e.groups.map(
        (g) => html`<li class=${g.state === 'handled' ? 'done' : g.state === 'dead' ? 'failed' : 'pending'} data-group=${g.group} data-state=${g.state}>
          <strong>Group ${g.group}</strong>: ${GROUP_STATE_LABEL[g.state]}${g.handledAt ? html` at ${time(g.handledAt)}` : null}
          ${g.deadLetter
            ? html`<div class="small">dead letter <a href=${`${CONSOLE_PATH}/dead-letters?letter=${g.deadLetter.id}`}>#${g.deadLetter.id}</a> (${g.deadLetter.status}) after ${g.deadLetter.attempts} attempt(s): <span class="error-text">${g.deadLetter.errorMessage}</span></div>`
            : null}
        </li>`,
      )}
    </ol>
    <details><summary class="small">Payload and headers</summary><pre>${JSON.stringify({ payload: e.payload, headers: e.headers }, null, 2)}</pre></details>
  </article>`;
}

export function lookupPage(ctx: ViewContext, query: string, result: LookupResult | null): VNode {
  return consoleLayout(
    ctx,
    'events',
    html`<h1>Event lookup</h1>
      <form method="get" action=${`${CONSOLE_PATH}/events`} class="search" role="search">
        <label for="q">Event id, outbox id, Redis entry id, or partition key (e.g. a contract id)</label>
        <div class="inline">
          <input id="q" name="q" type="text" value=${query} required />
          <button type="submit">Find</button>
        </div>
      </form>
      ${result === null
        ? null
        : result.events.length === 0
          ? html`<div class="banner info" role="status">Nothing found for <code>${result.query}</code> (published rows are pruned after the retention window).</div>`
          : html`<p class="muted" data-testid="lookup-summary">${result.events.length} event(s), matched by ${result.matchedAs?.replace(/_/g, ' ')}${result.matchedAs === 'partition_key' ? ', oldest first' : ''}.</p>
              ${result.redisError ? html`<div class="banner info">Redis could not be read: ${result.redisError}</div>` : null}
              ${result.events.map(journey)}`}`,
  );
}

// ---- Dead letters ------------------------------------------------------------

export function deadLetterGroupsPage(ctx: ViewContext, groups: DeadLetterGroup[]): VNode {
  return consoleLayout(
    ctx,
    'dead-letters',
    html`<h1>Dead letters</h1>
      <p class="muted">Grouped by fingerprint: event type + error class + first application stack frame. Open a group to replay or discard its letters.</p>
      ${groups.length === 0 ? html`<div class="banner ok" data-testid="no-dead-letters">No dead letters.</div>` : null}
      <div class="table-wrap">
        <table class="grid" data-testid="dead-letter-groups">
          <thead><tr><th scope="col">Event type</th><th scope="col">Error</th><th scope="col">Where</th><th scope="col">Count</th><th scope="col">Groups</th><th scope="col">First seen</th><th scope="col">Last seen</th></tr></thead>
          <tbody>
            ${groups.map(
              (g) => html`<tr data-fingerprint=${g.fingerprint}>
                <th scope="row"><a href=${`${CONSOLE_PATH}/dead-letters/${g.fingerprint}`}>${g.eventType ?? '(undecodable)'}</a></th>
                <td><strong>${g.errorClass}</strong><div class="small error-text">${truncate(g.sampleMessage, 160)}</div></td>
                <td><code class="small">${g.frame ?? '–'}</code></td>
                <td class="num">${g.count}</td>
                <td>${g.groups.join(', ')}</td>
                <td>${time(g.firstSeen)}</td>
                <td>${time(g.lastSeen)}</td>
              </tr>`,
            )}
          </tbody>
        </table>
      </div>`,
  );
}

function truncate(text: string, length: number): string {
  const first = text.split('\n')[0] ?? '';
  return first.length > length ? `${first.slice(0, length - 1)}…` : first;
}

export function deadLetterGroupPage(ctx: ViewContext, group: DeadLetterGroup | null, fingerprint: string, letters: DeadLetterRow[]): VNode {
  const actionPath = `${CONSOLE_PATH}/dead-letters/${fingerprint}`;
  const writable = ctx.mode === 'read-write';
  return consoleLayout(
    ctx,
    'dead-letters',
    html`<p class="small"><a href=${`${CONSOLE_PATH}/dead-letters`}>← All dead letters</a></p>
      ${group === null
        ? html`<h1>Dead letter group ${fingerprint}</h1><div class="banner ok">No dead letters left in this group.</div>`
        : html`<h1>${group.eventType ?? '(undecodable)'}: ${group.errorClass}</h1>
            <dl class="summary">
              <dt>Fingerprint</dt><dd><code>${group.fingerprint}</code></dd>
              <dt>Where</dt><dd><code>${group.frame ?? '–'}</code></dd>
              <dt>Letters</dt><dd>${group.count} in group(s) ${group.groups.join(', ')}</dd>
              <dt>Seen</dt><dd>${time(group.firstSeen)} to ${time(group.lastSeen)}</dd>
            </dl>
            <form method="post" action=${`${actionPath}/confirm`} id="letters">
              ${csrf(ctx)}
              ${writable
                ? html`<div class="actions">
                    <button type="submit" name="action" value="replay" data-testid="replay-selected">Replay selected</button>
                    <button type="submit" name="action" value="discard" class="secondary" data-testid="discard-selected">Discard selected</button>
                    <button type="submit" name="action" value="replay-all" data-testid="replay-group">Replay whole group (${group.count})</button>
                    <button type="submit" name="action" value="discard-all" class="secondary" data-testid="discard-group">Discard whole group</button>
                  </div>`
                : null}
              <div class="table-wrap">
                <table class="grid" data-testid="letters">
                  <thead><tr>${writable ? html`<th scope="col"><span class="visually-hidden">Select</span></th>` : null}<th scope="col">#</th><th scope="col">Group</th><th scope="col">Event</th><th scope="col">Key</th><th scope="col">Attempts</th><th scope="col">Dead since</th><th scope="col">Error</th></tr></thead>
                  <tbody>
                    ${letters.map(
                      (l) => html`<tr data-letter=${l.id}>
                        ${writable ? html`<td><input type="checkbox" name="ids" value=${l.id} aria-label=${`select dead letter ${l.id}`} /></td>` : null}
                        <td class="num">${l.id}</td>
                        <td>${l.groupName}</td>
                        <td>${l.eventId ? html`<a href=${`${CONSOLE_PATH}/events?q=${l.eventId}`}><code class="small">${l.eventId}</code></a>` : '–'}</td>
                        <td><code class="small">${l.partitionKey ?? '–'}</code></td>
                        <td class="num">${l.attempts}</td>
                        <td>${time(l.deadLetteredAt)}</td>
                        <td><details><summary class="error-text small">${truncate(l.errorMessage, 120)}</summary><pre>${l.errorStack ?? l.errorMessage}</pre></details></td>
                      </tr>`,
                    )}
                  </tbody>
                </table>
              </div>
            </form>`}`,
  );
}

export function confirmPage(ctx: ViewContext, options: { fingerprint: string; action: 'replay' | 'discard'; ids: string[]; title: string }): VNode {
  const verb = options.action === 'replay' ? 'Replay' : 'Discard';
  return consoleLayout(
    ctx,
    'dead-letters',
    html`<h1>${verb} ${options.ids.length} dead letter(s)?</h1>
      <p>${options.title}</p>
      <p class="muted">
        ${options.action === 'replay'
          ? 'Each is re-enqueued through the outbox with its original event id, oldest first, and delivered to its own consumer group again.'
          : 'Each is marked discarded; its event is not delivered again.'}
      </p>
      <p class="small">Dead letters: ${options.ids.join(', ')}</p>
      <form method="post" action=${`${CONSOLE_PATH}/dead-letters/${options.fingerprint}/${options.action}`} class="actions">
        ${csrf(ctx)}
        ${options.ids.map((id) => html`<input type="hidden" name="ids" value=${id} />`)}
        <button type="submit" data-testid="confirm">Yes, ${verb.toLowerCase()} ${options.ids.length}</button>
        <a class="button secondary" href=${`${CONSOLE_PATH}/dead-letters/${options.fingerprint}`}>Cancel</a>
      </form>`,
  );
}

// ---- Parked keys -------------------------------------------------------------

/** The hidden fields that name one parked key in a form. */
function parkedKeyFields(ref: ParkedKeyRef): VNode {
  return html`<input type="hidden" name="group" value=${ref.group} /><input type="hidden" name="stream" value=${ref.stream} /><input type="hidden" name="key" value=${ref.key} />`;
}

function parkedKeyState(k: ParkedKeyRow): VNode {
  return k.state === 'halted'
    ? html`<span class="pill bad">halted</span><div class="small muted">since ${time(k.haltedAt)}</div>`
    : html`<span class="pill warn">retrying</span><div class="small muted">next ${time(k.nextAttemptAt)}</div>`;
}

export function parkedKeysPage(ctx: ViewContext, keys: ParkedKeyRow[]): VNode {
  const writable = ctx.mode === 'read-write';
  const halted = keys.filter((k) => k.state === 'halted').length;
  return consoleLayout(
    ctx,
    'parked-keys',
    html`<h1>Parked keys</h1>
      <p class="muted">
        When an event fails, its partition key (the entity: a contract, an owner) is parked: that event and every later event of the key wait, in
        order, while other keys flow. A retrying key is retried on its schedule by the consumer; a halted key ran out of attempts and waits for you.${' '}
        <strong>Release</strong> retries its head event now with fresh attempts (after the fix is out); <strong>Discard head</strong> drops the head event,
        kept as a discarded dead letter, and the key's next event runs.
      </p>
      ${keys.length === 0
        ? html`<div class="banner ok" data-testid="no-parked-keys">No parked keys: every key is flowing.</div>`
        : html`<p data-testid="parked-summary">${halted > 0 ? html`<strong class="bad-text">${halted} halted</strong>` : '0 halted'}, ${keys.length - halted} retrying.</p>
      <div class="table-wrap">
        <table class="grid" data-testid="parked-keys">
          <thead><tr><th scope="col">State</th><th scope="col">Key</th><th scope="col">Group / stream</th><th scope="col">Head event</th><th scope="col">Attempts</th><th scope="col">Waiting</th><th scope="col">Error</th>${writable ? html`<th scope="col"><span class="visually-hidden">Actions</span></th>` : null}</tr></thead>
          <tbody>
            ${keys.map(
              (k) => html`<tr class=${k.state === 'halted' ? 'flagged' : undefined} data-key=${k.key} data-group=${k.group} data-state=${k.state}>
                <td>${parkedKeyState(k)}</td>
                <th scope="row"><a href=${`${CONSOLE_PATH}/events?q=${encodeURIComponent(k.key)}`}><code>${k.key}</code></a></th>
                <td><strong>${k.group}</strong><div><code class="small nowrap">${k.stream}</code></div></td>
                <td>${k.head ? html`${k.head.eventType}<div><a href=${`${CONSOLE_PATH}/events?q=${k.head.eventId}`}><code class="small">${k.head.eventId}</code></a></div>` : html`<span class="muted">none left</span>`}</td>
                <td class="num">${k.attempts}</td>
                <td class="num">${k.parkedEvents}</td>
                <td>${k.lastError ? html`<details><summary class="error-text small">${truncate(k.lastError, 120)}</summary><pre>${k.lastError}</pre></details>` : html`<span class="muted">–</span>`}</td>
                ${writable
                  ? html`<td>
                      <form method="post" action=${`${CONSOLE_PATH}/parked-keys/confirm`} class="row-actions">
                        ${csrf(ctx)}${parkedKeyFields(k)}
                        <button type="submit" name="action" value="release" class="small-button" data-testid="release-key">Release</button>
                        <button type="submit" name="action" value="discard" class="secondary small-button" data-testid="discard-head">Discard head</button>
                      </form>
                    </td>`
                  : null}
              </tr>`,
            )}
          </tbody>
        </table>
      </div>`}`,
  );
}

export function parkedKeyConfirmPage(ctx: ViewContext, action: 'release' | 'discard', key: ParkedKeyRow): VNode {
  const head = key.head ? `${key.head.eventType} ${key.head.eventId}` : 'no event';
  return consoleLayout(
    ctx,
    'parked-keys',
    html`<h1>${action === 'release' ? `Release key ${key.key}?` : `Discard the head event of key ${key.key}?`}</h1>
      <dl class="summary">
        <dt>Group</dt><dd>${key.group}</dd>
        <dt>Stream</dt><dd><code>${key.stream}</code></dd>
        <dt>Head event</dt><dd><code>${head}</code>, ${key.attempts} failed attempt(s), ${key.parkedEvents} event(s) waiting</dd>
        <dt>Error</dt><dd class="error-text">${key.lastError ?? '–'}</dd>
      </dl>
      <p class="muted">
        ${action === 'release'
          ? 'Its head event is retried now, with fresh attempts, by the consumer that holds the partition (within a second); on success the events behind it follow in order.'
          : 'Its head event is not delivered again: it is kept as a dead letter with status discarded, and the next event of the key runs now.'}
      </p>
      <form method="post" action=${`${CONSOLE_PATH}/parked-keys/${action}`} class="actions">
        ${csrf(ctx)}${parkedKeyFields(key)}
        <button type="submit" data-testid="confirm">${action === 'release' ? `Yes, release ${key.key}` : `Yes, discard ${head}`}</button>
        <a class="button secondary" href=${`${CONSOLE_PATH}/parked-keys`}>Cancel</a>
      </form>`,
  );
}

// ---- Nodes and leases --------------------------------------------------------

export function nodesPage(ctx: ViewContext, nodes: NodeStatus[] | null, leases: LeaseEntry[]): VNode {
  const writable = ctx.mode === 'read-write';
  const deadLeases = leases.filter((l) => !l.expired && (l.owner === 'dead' || l.owner === 'unregistered'));
  return consoleLayout(
    ctx,
    'nodes',
    html`<h1>Nodes and leases</h1>
      ${nodes === null ? html`<div class="banner error">This database has no events.relay_node table: run pnpm db:migrate.</div>` : null}
      ${deadLeases.length > 0
        ? html`<div class="banner error" role="alert">
            <p><strong>${deadLeases.length} lease(s) held by dead owners</strong> block their streams until they expire.</p>
            ${writable
              ? html`<form method="post" action=${`${CONSOLE_PATH}/leases/release-dead`}>${csrf(ctx)}<button type="submit" data-testid="release-dead">Release every dead owner's lease</button></form>`
              : null}
          </div>`
        : null}
      <h2>Processes</h2>
      <div class="table-wrap">
        <table class="grid" data-testid="nodes">
          <thead><tr><th scope="col">State</th><th scope="col">Role</th><th scope="col">Owner</th><th scope="col">Version</th><th scope="col">Started</th><th scope="col">Last heartbeat</th></tr></thead>
          <tbody>
            ${(nodes ?? []).map(
              (n) => html`<tr data-owner=${n.ownerId}>
                <td>${n.alive ? html`<span class="pill good">alive</span>` : html`<span class="pill bad">${n.deadReason === 'session_gone' ? 'dead (killed)' : 'dead (no heartbeat)'}</span>`}</td>
                <td>${n.role}</td>
                <td><code>${n.ownerId}</code></td>
                <td>${n.version}</td>
                <td>${time(n.startedAt)}</td>
                <td>${age(n.secondsSinceHeartbeat)} ago</td>
              </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${nodes !== null && nodes.length === 0 ? html`<p class="muted">No publisher or consumer is registered against this database.</p>` : null}
      <h2>Leases</h2>
      <div class="table-wrap">
        <table class="grid" data-testid="leases">
          <thead><tr><th scope="col">Stream</th><th scope="col">Role</th><th scope="col">Owner</th><th scope="col">Until</th><th scope="col">Token</th>${writable ? html`<th scope="col"><span class="visually-hidden">Action</span></th>` : null}</tr></thead>
          <tbody>
            ${leases.map((l) => {
              const blocked = deadLeases.includes(l);
              return html`<tr class=${blocked ? 'flagged' : undefined}>
                <td><code>${l.stream}</code></td>
                <td>${l.role}</td>
                <td><code>${l.ownerId}</code> ${leaseCellState(l)}</td>
                <td>${time(l.leaseUntil)}</td>
                <td class="num">${l.fencingToken}</td>
                ${writable
                  ? html`<td>${blocked
                      ? html`<form method="post" action=${`${CONSOLE_PATH}/leases/release`}>${csrf(ctx)}<input type="hidden" name="stream" value=${l.stream} /><input type="hidden" name="role" value=${l.role} /><button type="submit" class="secondary small-button">Release</button></form>`
                      : null}</td>`
                  : null}
              </tr>`;
            })}
          </tbody>
        </table>
      </div>`,
  );
}

function leaseCellState(l: LeaseEntry): VNode {
  if (l.owner === 'dead') return html`<span class="pill bad">owner dead</span>`;
  if (l.owner === 'unregistered') return html`<span class="pill bad">never registered</span>`;
  if (l.expired) return html`<span class="pill warn">expired</span>`;
  return html`<span class="pill good">alive</span>`;
}
