/**
 * The wizard's views (SPEC §4: Profile → Plan → Confirmation →
 * LegalDocsSigning → Success), as preact/htm templates. Views only render
 * what they are given; the router loads data and maps errors.
 */
import type { DraftView, InsurancePlan, OwnerPet } from '@petcover/domain';
import { html, type ComponentChildren, type VNode } from '../pages/render';

/** Field name → message, shown next to the field. */
export type FieldErrors = Record<string, string>;

const STEPS = [
  { key: 'profile', label: 'Profile' },
  { key: 'plan', label: 'Plan' },
  { key: 'confirmation', label: 'Confirmation' },
  { key: 'legal_docs_signing', label: 'Signing' },
  { key: 'success', label: 'Success' },
] as const;
export type StepKey = (typeof STEPS)[number]['key'];

const money = new Intl.NumberFormat('en-IE', { style: 'currency', currency: 'EUR' });
export function formatCents(cents: number): string {
  return money.format(cents / 100);
}

export interface Chrome {
  owner: string | undefined;
  csrf: VNode;
  devSignIn: boolean;
}

/** Header (who is signed in, sign out) and main landmark. */
export function layout(chrome: Chrome, children: ComponentChildren): VNode {
  return html`<header class="site">
      <div class="inner">
        <a class="brand" href="/">PetCover</a>
        ${chrome.owner
          ? html`<form method="post" action="/sign-out" class="who">
              ${chrome.csrf}
              <span>Owner <code>${chrome.owner}</code></span>
              <button type="submit" class="link">Sign out</button>
            </form>`
          : chrome.devSignIn
            ? html`<a href="/dev/sign-in">Sign in</a>`
            : null}
      </div>
    </header>
    <main id="main">${children}</main>`;
}

/** "Step 2 of 5" progress, the current step marked for screen readers. */
export function stepper(current: StepKey): VNode {
  const index = STEPS.findIndex((s) => s.key === current);
  return html`<nav aria-label="Progress">
    <ol class="steps">
      ${STEPS.map(
        (step, i) =>
          html`<li class=${i < index ? 'done' : undefined} aria-current=${i === index ? 'step' : undefined}>
            ${i + 1}. ${step.label}${i < index ? html`<span class="visually-hidden"> (done)</span>` : null}
          </li>`,
      )}
    </ol>
  </nav>`;
}

export function banner(kind: 'error' | 'ok' | 'info', children: ComponentChildren): VNode {
  return html`<div class="banner ${kind}" role=${kind === 'error' ? 'alert' : 'status'}>${children}</div>`;
}

/** A labelled input with its hint and error (aria-describedby, aria-invalid). */
function field(options: {
  name: string;
  label: string;
  type: 'text' | 'email' | 'date';
  value: string | undefined;
  errors: FieldErrors;
  hint?: string;
  required?: boolean;
  autocomplete?: string;
  max?: string;
}): VNode {
  const error = options.errors[options.name];
  const id = `field-${options.name}`;
  const describedBy = [options.hint ? `${id}-hint` : null, error ? `${id}-error` : null].filter(Boolean).join(' ') || undefined;
  return html`<div class="field">
    <label for=${id}>${options.label}</label>
    ${options.hint ? html`<p class="hint" id=${`${id}-hint`}>${options.hint}</p>` : null}
    <input
      id=${id}
      name=${options.name}
      type=${options.type}
      value=${options.value ?? ''}
      required=${options.required ?? true}
      autocomplete=${options.autocomplete}
      max=${options.max}
      aria-invalid=${error ? 'true' : undefined}
      aria-describedby=${describedBy}
    />
    ${error ? html`<p class="field-error" id=${`${id}-error`}>${error}</p>` : null}
  </div>`;
}

export function homeView(pets: OwnerPet[] | undefined, devSignIn: boolean, notice?: string): VNode {
  if (!pets) {
    return html`<h1>Insure your pet</h1>
      ${notice ? banner('info', html`<p>${notice}</p>`) : null}
      <p>Add your dog or cat, pick a plan, sign the documents, and your pet is covered.</p>
      ${devSignIn
        ? html`<p><a class="button" href="/dev/sign-in">Sign in (development)</a></p>`
        : html`<p>Open this page from your PetCover account to sign in.</p>`}`;
  }
  return html`<h1>Your pets</h1>
    ${pets.length === 0
      ? html`<p>No pets yet.</p>`
      : html`<table class="pets">
          <caption class="visually-hidden">Your pets and where each enrollment stands</caption>
          <thead>
            <tr><th scope="col">Pet</th><th scope="col">Status</th><th scope="col"><span class="visually-hidden">Action</span></th></tr>
          </thead>
          <tbody>
            ${pets.map(
              ({ pet, draft, packageStatus, approvalStatus }) => html`<tr>
                <td>${pet.name} <span class="hint">(${pet.species}, ${pet.breed})</span></td>
                <td>
                  ${pet.status === 'enrolled'
                    ? html`<span class="status-enrolled">Enrolled</span>`
                    : packageStatus === 'closed'
                      ? html`<span class="status-closed">Not covered: signature request ${approvalStatus}</span>`
                      : `In progress: ${stepLabel(draft?.step)}`}
                </td>
                <td>${draft ? html`<a href=${`/drafts/${draft.id}`}>${pet.status === 'enrolled' || packageStatus === 'closed' ? 'View' : 'Continue'}<span class="visually-hidden"> ${pet.name}</span></a>` : null}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
    <p class="actions"><a class="button" href="/pets/new">Add a pet</a></p>`;
}

function stepLabel(step: string | undefined): string {
  return STEPS.find((s) => s.key === step)?.label ?? 'Profile';
}

export interface ProfileForm {
  name?: string;
  species?: string;
  breed?: string;
  birthDate?: string;
}

export function profileView(csrf: VNode, values: ProfileForm, errors: FieldErrors, today: string): VNode {
  const speciesError = errors.species;
  return html`${stepper('profile')}
    <h1>Tell us about your pet</h1>
    ${Object.keys(errors).length > 0 ? banner('error', html`<p>Please correct the fields marked below.</p>`) : null}
    <form method="post" action="/pets" novalidate>
      ${csrf}
      ${field({ name: 'name', label: 'Name', type: 'text', value: values.name, errors, autocomplete: 'off' })}
      <div class="field">
        <label for="field-species">Species</label>
        <select
          id="field-species"
          name="species"
          required
          aria-invalid=${speciesError ? 'true' : undefined}
          aria-describedby=${speciesError ? 'field-species-error' : undefined}
        >
          <option value="" selected=${!values.species}>Choose…</option>
          <option value="dog" selected=${values.species === 'dog'}>Dog</option>
          <option value="cat" selected=${values.species === 'cat'}>Cat</option>
        </select>
        ${speciesError ? html`<p class="field-error" id="field-species-error">${speciesError}</p>` : null}
      </div>
      ${field({ name: 'breed', label: 'Breed', type: 'text', value: values.breed, errors, autocomplete: 'off' })}
      ${field({ name: 'birthDate', label: 'Birth date', type: 'date', value: values.birthDate, errors, hint: 'YYYY-MM-DD, not in the future', max: today })}
      <div class="actions"><button type="submit">Continue to plans</button></div>
    </form>`;
}

export function planView(csrf: VNode, draftId: string, petName: string, plans: InsurancePlan[], chosen: string | undefined, errors: FieldErrors): VNode {
  const error = errors.planCode;
  return html`${stepper('plan')}
    <h1>Choose a plan for ${petName}</h1>
    <form method="post" action=${`/drafts/${draftId}/plan`}>
      ${csrf}
      <fieldset aria-describedby=${error ? 'field-planCode-error' : undefined}>
        <legend>Plan</legend>
        ${error ? html`<p class="field-error" id="field-planCode-error" role="alert">${error}</p>` : null}
        <div class="plans">
          ${plans.map(
            (plan) => html`<label class="plan" for=${`plan-${plan.code}`}>
              <input type="radio" id=${`plan-${plan.code}`} name="planCode" value=${plan.code} checked=${plan.code === chosen} required />
              <span class="name">${plan.name}</span>
              <dl>
                <dt>Monthly premium</dt><dd>${formatCents(plan.monthlyPremiumCents)}</dd>
                <dt>Reimbursement</dt><dd>${plan.reimbursementRatePercent} % of vet bills</dd>
                <dt>Annual limit</dt><dd>${formatCents(plan.annualLimitCents)}</dd>
              </dl>
            </label>`,
          )}
        </div>
      </fieldset>
      <div class="actions"><button type="submit">Continue to confirmation</button></div>
    </form>`;
}

export interface SignerForm {
  signerName?: string;
  signerEmail?: string;
}

export function confirmationView(
  csrf: VNode,
  view: DraftView,
  petName: string,
  plan: InsurancePlan | undefined,
  values: SignerForm,
  errors: FieldErrors,
  problem?: string,
): VNode {
  const draftId = view.draft.id;
  return html`${stepper('confirmation')}
    <h1>Confirm the enrollment of ${petName}</h1>
    ${problem ? banner('error', html`<p>${problem}</p>`) : Object.keys(errors).length > 0 ? banner('error', html`<p>Please correct the fields marked below.</p>`) : null}
    <dl class="summary">
      <dt>Pet</dt><dd>${petName}</dd>
      <dt>Plan</dt><dd>${plan ? `${plan.name}, ${formatCents(plan.monthlyPremiumCents)} a month` : view.draft.planCode}</dd>
      ${plan ? html`<dt>Reimbursement</dt><dd>${plan.reimbursementRatePercent} % up to ${formatCents(plan.annualLimitCents)} a year</dd>` : null}
    </dl>
    <p><a href=${`/drafts/${draftId}/plan`}>Change the plan</a></p>
    <form method="post" action=${`/drafts/${draftId}/confirm`} novalidate>
      ${csrf}
      <h2>Who signs the documents</h2>
      ${field({ name: 'signerName', label: 'Your full name', type: 'text', value: values.signerName, errors, autocomplete: 'name' })}
      ${field({ name: 'signerEmail', label: 'Your email', type: 'email', value: values.signerEmail, errors, autocomplete: 'email', hint: 'The signature request is sent here' })}
      <div class="actions"><button type="submit">Confirm and prepare the documents</button></div>
    </form>`;
}

/** The documents of a package, each opening its PDF. */
function documentList(view: DraftView): VNode {
  return html`<ul class="documents">
    ${view.documents.map(
      (d) => html`<li><a href=${`/drafts/${view.draft.id}/documents/${d.id}`} target="_blank" rel="noopener">${d.title}</a> <span class="hint">(PDF, ${Math.ceil(d.byteSize / 1024)} KB)</span></li>`,
    )}
  </ul>`;
}

export function signingView(csrf: VNode, view: DraftView, petName: string, manualProvider: boolean, problem?: string): VNode {
  const draftId = view.draft.id;
  const request = view.approvalRequest;
  return html`${stepper('legal_docs_signing')}
    <h1>Sign the documents for ${petName}</h1>
    ${problem ? banner('error', html`<p>${problem}</p>`) : null}
    <h2>Documents</h2>
    ${documentList(view)}
    ${manualProvider
      ? html`<h2>Signature</h2>
          <p>
            Development signature provider: the button below sends the callbacks the provider would send once you sign (sent, signed, all signed),
            through the same verification as the provider's webhook.
          </p>
          <form method="post" action=${`/drafts/${draftId}/sign`}>
            ${csrf}
            <div class="actions"><button type="submit">Sign all documents</button></div>
          </form>`
      : request?.signingUrl
        ? html`<h2>Signature</h2>
            <p class="actions">
              <a class="button" id="signing-link" href=${request.signingUrl} target="_blank" rel="noopener noreferrer">Sign the documents at Dropbox Sign</a>
            </p>
            <p>
              Or open the email from Dropbox Sign sent to <strong>${request.signerEmail}</strong> and sign there; this page moves on by itself once every
              document is signed.
            </p>`
        : html`<h2>Signature</h2>
            <p>The signature request was sent to <strong>${request?.signerEmail ?? 'you'}</strong>. Open the email from Dropbox Sign and sign there; this page moves on by itself once every document is signed.</p>`}
    ${progressBlock(view, petName, `/drafts/${draftId}/progress?from=signing`)}`;
}

/** How an approval request ended without every signature, as the owner reads it. */
export type ClosedOutcome = 'declined' | 'canceled' | 'expired';
const CLOSED_REASONS: Record<ClosedOutcome, { title: string; reason: (petName: string) => string }> = {
  declined: { title: 'Documents declined', reason: (pet) => `The documents were declined at the signature provider, so ${pet} is not covered.` },
  canceled: { title: 'Signature request canceled', reason: (pet) => `The signature request was canceled before every document was signed, so ${pet} is not covered.` },
  expired: { title: 'Signature request expired', reason: (pet) => `The signature request expired before every document was signed, so ${pet} is not covered.` },
};

/**
 * The terminal outcome of the draft's approval request when its package was
 * closed unsigned (ApprovalRequestClosed), else undefined.
 */
export function closedOutcome(view: DraftView): ClosedOutcome | undefined {
  if (view.package?.status !== 'closed') return undefined;
  const status = view.approvalRequest?.status;
  return status === 'declined' || status === 'expired' ? status : 'canceled';
}

/**
 * The Success page's heading. `oob`: sent with the polled progress fragment
 * as an htmx out-of-band swap, so the heading changes with the progress block.
 */
export function successHeading(view: DraftView, petName: string, oob = false): VNode {
  const closed = closedOutcome(view);
  const text = view.enrollment
    ? `${petName} is covered`
    : closed
      ? `${CLOSED_REASONS[closed].title}: ${petName} is not covered`
      : `Almost there: ${petName}'s enrollment`;
  return html`<h1 id="success-heading" hx-swap-oob=${oob ? 'true' : undefined}>${text}</h1>`;
}

export function successView(view: DraftView, petName: string): VNode {
  return html`${stepper('success')}
    ${successHeading(view, petName)}
    ${progressBlock(view, petName, `/drafts/${view.draft.id}/progress`)}
    <p class="actions"><a class="button secondary" href="/">Back to your pets</a></p>`;
}

/** What a closed (declined, canceled, expired) enrollment says, and the one thing the owner can do next. */
function closedBanner(outcome: ClosedOutcome, view: DraftView, petName: string): VNode {
  return banner(
    'error',
    html`<p><strong>${CLOSED_REASONS[outcome].title}.</strong> ${CLOSED_REASONS[outcome].reason(petName)}</p>
      <p>These documents can no longer be signed. To insure ${petName}, start a new enrollment: the pet's details are filled in for you; you choose a plan and sign new documents.</p>
      <p><a class="button" href=${`/pets/new?from=${view.draft.petId}`}>Start a new enrollment for ${petName}</a></p>`,
  );
}

/**
 * Where the enrollment stands (signatures → contract → enrollment). While
 * neither enrolled nor closed it polls `pollUrl` every second and replaces
 * itself (htmx), so the page updates when the consumer enrolls the pet, or
 * when the request is declined, canceled or expired, without a reload.
 */
export function progressBlock(view: DraftView, petName: string, pollUrl: string): VNode {
  const enrolled = Boolean(view.enrollment);
  const closed = closedOutcome(view);
  const signed = view.approvalRequest?.status === 'all_signed' || view.package?.status === 'signed' || view.package?.status === 'approved';
  const polling = enrolled || closed ? {} : { 'hx-get': pollUrl, 'hx-trigger': 'every 1s', 'hx-swap': 'outerHTML' };
  const item = (done: boolean, doneText: string, waitingText: string) =>
    html`<li class=${done ? 'status-enrolled' : 'status-waiting'}>${done ? '✓ ' : '… '}${done ? doneText : waitingText}</li>`;
  return html`<section id="enrollment-progress" aria-labelledby="progress-title" aria-live="polite" ...${polling}>
    <h2 id="progress-title">Enrollment</h2>
    ${enrolled
      ? banner(
          'ok',
          html`<p><strong>Enrolled.</strong> The contract is active.</p>
            <dl class="summary">
              <dt>Contract</dt><dd><code>${view.contract?.id}</code></dd>
              <dt>Plan</dt><dd>${view.contract?.planCode}, ${formatCents(view.contract?.monthlyPremiumCents ?? 0)} a month</dd>
              <dt>Starts on</dt><dd>${view.contract?.startsOn}</dd>
              <dt>Enrolled at</dt><dd>${view.enrollment?.enrolledAt.toISOString()}</dd>
            </dl>`,
        )
      : null}
    ${closed
      ? closedBanner(closed, view, petName)
      : html`<ul>
          ${item(signed, 'Documents signed', "Signatures: waiting for the provider's callbacks to be processed")}
          ${item(Boolean(view.contract), 'Contract created', 'Contract: created once every document is signed')}
          ${item(enrolled, 'Pet enrolled', 'Enrollment: the events pipeline enrolls the pet (publisher and consumer must be running)')}
        </ul>`}
  </section>`;
}

export function signInView(csrf: VNode, ownerValue: string, errors: FieldErrors, strictRefusal: boolean): VNode {
  if (strictRefusal) {
    return html`<h1>Development sign-in is off</h1>
      ${banner('error', html`<p>This api runs in strict mode (NODE_ENV=production or CI_STRICT=1), where development sign-in is refused.</p>`)}`;
  }
  return html`<h1>Sign in (development)</h1>
    <p>Issues an owner token signed with this api's AUTH_SECRET and keeps it in a cookie. Leave the field empty to become a new owner.</p>
    <form method="post" action="/dev/sign-in" novalidate>
      ${csrf}
      ${field({ name: 'owner', label: 'Owner global user id (optional)', type: 'text', value: ownerValue, errors, required: false, hint: 'A UUID, e.g. the --owner-global-user-id you gave simulate-pet-signature-flow' })}
      <div class="actions"><button type="submit">Sign in</button></div>
    </form>`;
}

export function messageView(title: string, message: string, link?: { href: string; text: string }): VNode {
  return html`<h1>${title}</h1>
    ${banner('error', html`<p>${message}</p>`)}
    ${link ? html`<p><a href=${link.href}>${link.text}</a></p>` : null}`;
}
