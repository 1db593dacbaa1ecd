import { asc, eq } from 'drizzle-orm';
import type { Database, Transaction } from '@petcover/outbox';
import { insurancePlan } from '../schema';

export type InsurancePlan = typeof insurancePlan.$inferSelect;

/** The plan catalogue, cheapest first. Read-only. */
export async function listPlans(db: Database): Promise<InsurancePlan[]> {
  return db.select().from(insurancePlan).orderBy(asc(insurancePlan.monthlyPremiumCents));
}

export async function findPlan(db: Database | Transaction, code: string): Promise<InsurancePlan | undefined> {
  const [plan] = await db.select().from(insurancePlan).where(eq(insurancePlan.code, code));
  return plan;
}
