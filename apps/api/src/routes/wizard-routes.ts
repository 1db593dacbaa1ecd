/**
 * Owner-scoped wizard routes (SPEC §4): every handler reads the owner from
 * the bearer token, and another owner's pet or draft answers 404.
 *
 *   POST /pets                     Profile: add a pet → 201 { pet, draft }
 *   GET  /pets/:petId              the pet, its draft step and enrollment
 *   GET  /pets/:petId/enrollment   { status: enrolled | not_enrolled, enrollment }
 *   GET  /drafts/:draftId          the draft, its step, package, documents
 *   PUT  /drafts/:draftId/plan     Plan: { planCode } → 200 draft; unknown plan → 422
 *   POST /drafts/:draftId/confirm  Confirmation → 202 while signatures are pending,
 *                                  201 when enrolled at once (DEV_AUTO_ENROLL_PET=1)
 */
import { Router, type RequestHandler } from 'express';
import { addPet, choosePlan, confirmDraft, findEnrollmentOfPet, getDraft, getPet, NotFoundError, SPECIES, type DraftView, type WizardDeps } from '@petcover/domain';
import { z } from 'zod';
import type { OwnerTokenConfig } from '../auth/owner-token';
import { parseRequestPart, requireJsonBody } from '../http/api-errors';
import { ownerOf, requireOwner } from '../http/owner-auth';

const petIdParams = z.object({ petId: z.string().uuid('must be a UUID') });
const draftIdParams = z.object({ draftId: z.string().uuid('must be a UUID') });

/** Text that Postgres can store: it refuses NUL in text columns (which used to answer 500). */
const text = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .refine((v) => !v.includes('\u0000'), 'must not contain NUL characters');

/** No pet insured today was born before this; it also keeps year 0000 (which Postgres refuses) out. */
const EARLIEST_BIRTH_DATE = '1980-01-01';

/** Bodies of the wizard's steps; the wizard pages validate their forms with the same schemas. */
export const newPetBody = z
  .object({
    name: text(100),
    species: z.enum(SPECIES),
    breed: text(100),
    birthDate: z.iso
      .date('must be a date YYYY-MM-DD')
      .refine((d) => d >= EARLIEST_BIRTH_DATE, `must not be before ${EARLIEST_BIRTH_DATE}`)
      .refine((d) => d <= new Date().toISOString().slice(0, 10), 'must not be in the future'),
  })
  .strict();

export const choosePlanBody = z.object({ planCode: text(64) }).strict();

export const confirmBody = z.object({ signer: z.object({ name: text(200), email: z.email() }).strict().optional() }).strict();

function draftJson(view: DraftView) {
  return {
    id: view.draft.id,
    petId: view.draft.petId,
    step: view.draft.step,
    planCode: view.draft.planCode,
    pendingDocumentCount: view.pendingDocumentCount,
    package: view.package && { id: view.package.id, version: view.package.version, status: view.package.status, planCode: view.package.planCode },
    approvalRequest: view.approvalRequest && {
      id: view.approvalRequest.id,
      provider: view.approvalRequest.provider,
      providerRequestId: view.approvalRequest.providerRequestId,
      signingUrl: view.approvalRequest.signingUrl,
      status: view.approvalRequest.status,
    },
    documents: view.documents.map((d) => ({ id: d.id, kind: d.kind, title: d.title, sha256: d.sha256, byteSize: d.byteSize })),
  };
}

export function createWizardRouter(deps: { wizard: WizardDeps; ownerTokens: OwnerTokenConfig; rateLimit: RequestHandler }): Router {
  const { wizard } = deps;
  const router = Router();
  // Per route, not router.use: an unknown path under /v1 must stay a 404, not a 401.
  const owner = requireOwner(deps.ownerTokens);
  // Writes: authenticated, JSON (415 otherwise), within the owner's budget (429).
  const write = [owner, requireJsonBody, deps.rateLimit];

  router.post('/pets', ...write, async (req, res) => {
    const body = parseRequestPart(newPetBody, req.body ?? {}, 'body');
    const { pet, draft } = await addPet(wizard.db, ownerOf(res), body);
    res.status(201).location(`/v1/pets/${pet.id}`).json({ pet, draft: { id: draft.id, step: draft.step } });
  });

  router.get('/pets/:petId', owner, async (req, res) => {
    const { petId } = parseRequestPart(petIdParams, req.params, 'params');
    const { pet, draft } = await getPet(wizard.db, ownerOf(res), petId);
    res.json({ pet, draft: draft && { id: draft.id, step: draft.step, planCode: draft.planCode } });
  });

  router.get('/pets/:petId/enrollment', owner, async (req, res) => {
    const { petId } = parseRequestPart(petIdParams, req.params, 'params');
    const found = await findEnrollmentOfPet(wizard.db, petId, ownerOf(res));
    if (!found) throw new NotFoundError('pet', petId);
    res.json({ petId, status: found.enrollment ? 'enrolled' : 'not_enrolled', enrollment: found.enrollment ?? null });
  });

  router.get('/drafts/:draftId', owner, async (req, res) => {
    const { draftId } = parseRequestPart(draftIdParams, req.params, 'params');
    res.json({ draft: draftJson(await getDraft(wizard.db, ownerOf(res), draftId)) });
  });

  router.put('/drafts/:draftId/plan', ...write, async (req, res) => {
    const { draftId } = parseRequestPart(draftIdParams, req.params, 'params');
    const { planCode } = parseRequestPart(choosePlanBody, req.body ?? {}, 'body');
    await choosePlan(wizard.db, ownerOf(res), draftId, planCode);
    res.json({ draft: draftJson(await getDraft(wizard.db, ownerOf(res), draftId)) });
  });

  router.post('/drafts/:draftId/confirm', ...write, async (req, res) => {
    const { draftId } = parseRequestPart(draftIdParams, req.params, 'params');
    const { signer } = parseRequestPart(confirmBody, req.body ?? {}, 'body');
    const result = await confirmDraft(wizard, ownerOf(res), draftId, signer);
    const body = {
      outcome: result.outcome,
      draft: draftJson(result.view),
      approvalRequest: result.view.approvalRequest ?? null,
      contract: result.contract ?? null,
      enrollment: result.enrollment ?? null,
    };
    res.status(result.outcome === 'enrolled' ? 201 : 202).json(body);
  });

  return router;
}
