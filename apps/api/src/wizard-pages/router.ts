/**
 * The owner wizard in a browser, served at `/` (SPEC §4):
 *
 *   GET  /                           sign-in prompt, or the owner's pets
 *   GET  /pets/new, POST /pets       Profile
 *   GET  /drafts/:id                 → the draft's current step
 *   GET|POST /drafts/:id/plan        Plan (the catalogue with premiums and limits)
 *   GET|POST /drafts/:id/confirm     Confirmation (package, documents, dispatch)
 *   GET  /drafts/:id/signing         LegalDocsSigning; moves on by itself when nothing is left to sign
 *   POST /drafts/:id/sign            manual provider: sends the provider's callbacks
 *   GET  /drafts/:id/success         Success; updates itself until the pet is enrolled
 *   GET  /drafts/:id/progress        the progress fragment the two pages above poll (htmx)
 *   GET  /drafts/:id/documents/:doc  a rendered PDF
 *   GET|POST /dev/sign-in, POST /sign-out
 *   any other path                   an HTML 404 for browsers (JSON 404 for /v1 and JSON clients)
 *
 * Pages call the same domain services as the JSON API, with the same input
 * schemas, so both answer the same errors; here each error is shown next to
 * its field or as a message on the page. Every form carries a CSRF token.
 */
import { randomUUID } from 'node:crypto';
import { Router, type ErrorRequestHandler, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import {
  addPet,
  CallbackRejectedError,
  choosePlan,
  confirmDraft,
  findPlan,
  getDraft,
  getPet,
  listPetsOfOwner,
  listPlans,
  NotFoundError,
  SignatureDispatchError,
  StateConflictError,
  UnknownPlanError,
  type DraftView,
  type WizardDeps,
} from '@petcover/domain';
import type { z } from 'zod';
import { signOwnerToken, type OwnerTokenConfig } from '../auth/owner-token';
import { signManually } from '../manual-signing';
import { choosePlanBody, confirmBody, newPetBody } from '../routes/wizard-routes';
import { acceptForm, CsrfError, csrfField, issueCsrfToken, renderFragment, sendPage, type VNode } from '../pages/render';
import { DEV_SESSION_SECONDS, endSession, loadSession, requireOwnerSession, sessionOf, sessionOwner, SignInRequiredError, startSession } from './session';
import {
  confirmationView,
  homeView,
  layout,
  messageView,
  planView,
  profileView,
  progressBlock,
  signingView,
  signInView,
  successHeading,
  successView,
  type FieldErrors,
} from './views';

export interface WizardPagesDeps {
  wizard: WizardDeps;
  ownerTokens: OwnerTokenConfig;
  /** Keys the callbacks the manual provider's "Sign" button sends. */
  signatureApiKey: string;
  /** The dev sign-in page; false in strict mode. */
  devSignIn: boolean;
  logger: Logger;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Field → first message of a failed zod parse (`body.x` paths become `x`). */
function fieldErrorsOf(error: z.ZodError, rename: Record<string, string> = {}): FieldErrors {
  const errors: FieldErrors = {};
  for (const issue of error.issues) {
    const key = String(issue.path[issue.path.length - 1] ?? 'form');
    const name = rename[issue.path.join('.')] ?? key;
    errors[name] ??= issue.message;
  }
  return errors;
}

function formString(req: Request, name: string): string | undefined {
  const value = (req.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

export function createWizardPagesRouter(deps: WizardPagesDeps): Router {
  const { wizard } = deps;
  const router = Router();
  const owner = requireOwnerSession;
  // Reads the session cookie (nothing else) for every page this router serves.
  router.use(loadSession(deps.ownerTokens));
  // Per route, not router.use: paths this router does not serve must pass untouched (no cookie).
  const form = acceptForm;
  const view = issueCsrfToken;

  const page = (req: Request, res: Response, status: number, title: string, body: VNode, htmx = false) => {
    const chrome = { owner: sessionOf(res).owner, csrf: csrfField(res), devSignIn: deps.devSignIn };
    sendPage(res, status, { title: `${title} · PetCover`, body: layout(chrome, body), htmx });
  };

  /** The draft of the signed-in owner (NotFoundError for another owner's, like a missing one). */
  const loadDraft = async (req: Request, res: Response): Promise<{ view: DraftView; petName: string }> => {
    const draftId = String(req.params.draftId);
    if (!UUID.test(draftId)) throw new NotFoundError('draft', draftId);
    const view = await getDraft(wizard.db, sessionOwner(res), draftId);
    const { pet } = await getPet(wizard.db, sessionOwner(res), view.draft.petId);
    return { view, petName: pet.name };
  };

  router.get('/', view, async (req, res) => {
    const session = sessionOf(res);
    const pets = session.owner ? await listPetsOfOwner(wizard.db, session.owner) : undefined;
    const notice = !session.owner && session.problem ? `Your session is not valid (${session.problem}); sign in again.` : undefined;
    page(req, res, 200, pets ? 'Your pets' : 'Welcome', homeView(pets, deps.devSignIn, notice));
  });

  // --- Profile -----------------------------------------------------------
  const today = () => new Date().toISOString().slice(0, 10);
  router.get('/pets/new', view, owner, async (req, res) => {
    // `?from=<pet id>`: a new enrollment of a pet whose request was declined, canceled or expired, its details filled in.
    const from = typeof req.query.from === 'string' && UUID.test(req.query.from) ? req.query.from : undefined;
    const values = from ? await getPet(wizard.db, sessionOwner(res), from).then(({ pet }) => ({ name: pet.name, species: pet.species, breed: pet.breed, birthDate: pet.birthDate })) : {};
    page(req, res, 200, 'Profile', profileView(csrfField(res), values, {}, today()));
  });
  router.post('/pets', form, owner, async (req, res) => {
    const values = { name: formString(req, 'name'), species: formString(req, 'species'), breed: formString(req, 'breed'), birthDate: formString(req, 'birthDate') };
    // Empty fields are missing fields, as the JSON API sees them.
    const input = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined && v.trim() !== ''));
    const parsed = newPetBody.safeParse(input);
    if (!parsed.success) {
      page(req, res, 400, 'Profile', profileView(csrfField(res), values, fieldErrorsOf(parsed.error), today()));
      return;
    }
    const { draft } = await addPet(wizard.db, sessionOwner(res), parsed.data);
    res.redirect(303, `/drafts/${draft.id}/plan`);
  });

  // --- the draft's steps ------------------------------------------------------
  router.get('/drafts/:draftId', view, owner, async (req, res) => {
    const { view } = await loadDraft(req, res);
    const target = { plan: 'plan', confirmation: 'confirm', legal_docs_signing: 'signing', success: 'success', profile: 'plan' }[view.draft.step];
    res.redirect(303, `/drafts/${view.draft.id}/${target}`);
  });

  const renderPlan = async (req: Request, res: Response, status: number, errors: FieldErrors, chosen?: string) => {
    const { view, petName } = await loadDraft(req, res);
    if (view.package) return res.redirect(303, `/drafts/${view.draft.id}/signing`);
    page(req, res, status, 'Plan', planView(csrfField(res), view.draft.id, petName, await listPlans(wizard.db), chosen ?? view.draft.planCode ?? undefined, errors));
  };
  router.get('/drafts/:draftId/plan', view, owner, (req, res) => renderPlan(req, res, 200, {}));
  router.post('/drafts/:draftId/plan', form, owner, async (req, res) => {
    const { view } = await loadDraft(req, res);
    const planCode = formString(req, 'planCode');
    const parsed = choosePlanBody.safeParse(planCode ? { planCode } : {});
    if (!parsed.success) return renderPlan(req, res, 400, { planCode: planCode ? fieldErrorsOf(parsed.error).planCode ?? 'invalid plan' : 'Choose a plan' });
    try {
      await choosePlan(wizard.db, sessionOwner(res), view.draft.id, parsed.data.planCode);
    } catch (error) {
      if (error instanceof UnknownPlanError) return renderPlan(req, res, 422, { planCode: `There is no plan "${error.planCode}" in the catalogue; choose one of these.` });
      throw error;
    }
    res.redirect(303, `/drafts/${view.draft.id}/confirm`);
  });

  // --- Confirmation -------------------------------------------------------------
  const renderConfirmation = async (req: Request, res: Response, status: number, values: Record<string, string | undefined>, errors: FieldErrors, problem?: string) => {
    const { view, petName } = await loadDraft(req, res);
    if (!view.draft.planCode) return res.redirect(303, `/drafts/${view.draft.id}/plan`);
    if (view.package && !problem) return res.redirect(303, `/drafts/${view.draft.id}/signing`);
    const plan = await findPlan(wizard.db, view.draft.planCode);
    page(req, res, status, 'Confirmation', confirmationView(csrfField(res), view, petName, plan, values, errors, problem));
  };
  router.get('/drafts/:draftId/confirm', view, owner, (req, res) => renderConfirmation(req, res, 200, {}, {}));
  router.post('/drafts/:draftId/confirm', form, owner, async (req, res) => {
    const values = { signerName: formString(req, 'signerName'), signerEmail: formString(req, 'signerEmail') };
    const parsed = confirmBody.safeParse({ signer: { name: values.signerName?.trim() ?? '', email: values.signerEmail?.trim() ?? '' } });
    if (!parsed.success) {
      return renderConfirmation(req, res, 400, values, fieldErrorsOf(parsed.error, { 'signer.name': 'signerName', 'signer.email': 'signerEmail' }));
    }
    const draftId = String(req.params.draftId);
    if (!UUID.test(draftId)) throw new NotFoundError('draft', draftId);
    try {
      await confirmDraft(wizard, sessionOwner(res), draftId, parsed.data.signer);
    } catch (error) {
      if (error instanceof SignatureDispatchError) {
        return renderConfirmation(req, res, 502, values, {}, `The signature provider did not take the documents (${error.message}). Your documents are kept; confirm again to retry.`);
      }
      throw error;
    }
    // LegalDocsSigning moves on by itself when there is nothing to sign (DEV_AUTO_ENROLL_PET).
    res.redirect(303, `/drafts/${draftId}/signing`);
  });

  // --- LegalDocsSigning ---------------------------------------------------------------------
  router.get('/drafts/:draftId/signing', view, owner, async (req, res) => {
    const { view, petName } = await loadDraft(req, res);
    if (!view.package) return res.redirect(303, `/drafts/${view.draft.id}/${view.draft.planCode ? 'confirm' : 'plan'}`);
    if (view.pendingDocumentCount === 0 || view.approvalRequest?.status === 'all_signed') return res.redirect(303, `/drafts/${view.draft.id}/success`);
    page(req, res, 200, 'Signing', signingView(csrfField(res), view, petName, view.approvalRequest?.provider === 'manual'), true);
  });
  router.post('/drafts/:draftId/sign', form, owner, async (req, res) => {
    const { view, petName } = await loadDraft(req, res);
    const request = view.approvalRequest;
    if (!request || request.provider !== 'manual' || !request.providerRequestId) {
      const problem = !request?.providerRequestId
        ? 'The documents have not reached the signature provider yet; confirm again to retry.'
        : 'These documents are signed at the signature provider (see the email), not here.';
      return page(req, res, 409, 'Signing', signingView(csrfField(res), view, petName, false, problem), true);
    }
    try {
      await signManually(wizard.db, { id: request.id, providerRequestId: request.providerRequestId }, { apiKey: deps.signatureApiKey, provider: wizard.signatureProvider });
    } catch (error) {
      if (error instanceof CallbackRejectedError) {
        return page(req, res, error.status, 'Signing', signingView(csrfField(res), view, petName, true, `The signature callback was refused: ${error.message}`), true);
      }
      throw error;
    }
    res.redirect(303, `/drafts/${view.draft.id}/success`);
  });

  // --- Success ------------------------------------------------------------------
  router.get('/drafts/:draftId/success', view, owner, async (req, res) => {
    const { view, petName } = await loadDraft(req, res);
    if (!view.package) return res.redirect(303, `/drafts/${view.draft.id}`);
    page(req, res, 200, 'Success', successView(view, petName), true);
  });
  router.get('/drafts/:draftId/progress', owner, async (req, res) => {
    const { view, petName } = await loadDraft(req, res);
    const fromSigning = req.query.from === 'signing';
    // The signing page moves on once the provider reports every signature, or closes the request.
    if (fromSigning && (view.approvalRequest?.status === 'all_signed' || view.package?.status !== 'pending_signatures')) {
      res.set('HX-Redirect', `/drafts/${view.draft.id}/success`);
    }
    const block = progressBlock(view, petName, `/drafts/${view.draft.id}/progress${fromSigning ? '?from=signing' : ''}`);
    // On Success the heading changes with the block (an out-of-band swap of #success-heading).
    const fragment = fromSigning ? renderFragment(block) : renderFragment(block) + renderFragment(successHeading(view, petName, true));
    res.set('cache-control', 'no-store').type('html').send(fragment);
  });

  router.get('/drafts/:draftId/documents/:documentId', owner, async (req, res) => {
    const { view } = await loadDraft(req, res);
    const document = view.documents.find((d) => d.id === req.params.documentId);
    if (!document) throw new NotFoundError('document', String(req.params.documentId));
    const pdf = await wizard.documentStore.get(document.storageKey);
    res
      .status(200)
      .type('application/pdf')
      .set('content-disposition', `inline; filename="${document.kind}.pdf"`)
      .set('cache-control', 'private, no-store')
      .send(pdf);
  });

  // --- sign-in ------------------------------------------------------------------
  router.get('/dev/sign-in', view, (req, res) => {
    if (!deps.devSignIn) return page(req, res, 403, 'Sign-in', signInView(csrfField(res), '', {}, true));
    page(req, res, 200, 'Sign-in', signInView(csrfField(res), '', {}, false));
  });
  router.post('/dev/sign-in', form, async (req, res) => {
    if (!deps.devSignIn) return page(req, res, 403, 'Sign-in', signInView(csrfField(res), '', {}, true));
    const given = formString(req, 'owner')?.trim() ?? '';
    if (given !== '' && !UUID.test(given)) {
      return page(req, res, 400, 'Sign-in', signInView(csrfField(res), given, { owner: 'must be a UUID (or empty for a new owner)' }, false));
    }
    const ownerId = given === '' ? randomUUID() : given.toLowerCase();
    startSession(req, res, await signOwnerToken(deps.ownerTokens, ownerId, { ttlSeconds: DEV_SESSION_SECONDS }), DEV_SESSION_SECONDS);
    deps.logger.info({ owner: ownerId }, 'dev sign-in');
    res.redirect(303, '/');
  });
  router.post('/sign-out', form, (_req, res) => {
    endSession(res);
    res.redirect(303, '/');
  });

  // Any other path: a browser (it prefers HTML) gets a page; /v1 and every
  // client that takes JSON (curl's */* included) fall through to the api's JSON 404.
  router.use((req, res, next) => {
    if (req.path === '/v1' || req.path.startsWith('/v1/') || req.accepts(['json', 'html']) !== 'html') return next();
    view(req, res, () => page(req, res, 404, 'Not found', messageView('Page not found', `There is no page at ${req.path}.`, { href: '/', text: 'PetCover home' })));
  });

  router.use(pageErrors(deps, page));
  return router;
}

/** Errors of the pages as pages: a precise status and a message, never a stack trace. */
function pageErrors(deps: WizardPagesDeps, page: (req: Request, res: Response, status: number, title: string, body: VNode) => void): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) return next(error);
    if (req.get('hx-request')) {
      // A polled fragment: keep the last state on screen instead of swapping in a page.
      res.status(error instanceof SignInRequiredError ? 401 : error instanceof NotFoundError ? 404 : 500).end();
      if (!(error instanceof SignInRequiredError || error instanceof NotFoundError)) deps.logger.error({ err: error, path: req.path }, 'page fragment failed');
      return;
    }
    if (error instanceof SignInRequiredError) {
      return page(req, res, 401, 'Sign in', messageView('Please sign in', error.message, deps.devSignIn ? { href: '/dev/sign-in', text: 'Sign in (development)' } : undefined));
    }
    if (error instanceof NotFoundError) {
      return page(req, res, 404, 'Not found', messageView('Not found', `This ${error.entity} does not exist, or it belongs to another owner.`, { href: '/', text: 'Your pets' }));
    }
    if (error instanceof CsrfError) return page(req, res, 403, 'Form expired', messageView('Form expired', error.message, { href: req.path, text: 'Reload' }));
    if (error instanceof StateConflictError) return page(req, res, 409, 'Not possible now', messageView('Not possible now', error.message, { href: '/', text: 'Your pets' }));
    const parserError = error as { type?: string };
    if (parserError.type === 'entity.too.large') return page(req, res, 413, 'Too large', messageView('Too large', 'The form is larger than this site accepts.'));
    deps.logger.error({ err: error, method: req.method, path: req.path }, 'page failed');
    page(req, res, 500, 'Something went wrong', messageView('Something went wrong', 'The request failed on our side; the api log has the details. Try again in a moment.'));
  };
}
