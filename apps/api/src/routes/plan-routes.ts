/** `GET /plans`: the seeded plan catalogue. Public (no owner data). */
import { Router } from 'express';
import { listPlans } from '@petcover/domain';
import type { Database } from '@petcover/outbox';

export function createPlanRouter(deps: { db: Database }): Router {
  const router = Router();
  router.get('/plans', async (_req, res) => {
    const plans = await listPlans(deps.db);
    res.json({
      plans: plans.map((p) => ({
        code: p.code,
        name: p.name,
        monthlyPremiumCents: p.monthlyPremiumCents,
        reimbursementRatePercent: p.reimbursementRatePercent,
        annualLimitCents: p.annualLimitCents,
      })),
    });
  });
  return router;
}
