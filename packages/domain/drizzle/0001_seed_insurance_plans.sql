-- The seeded plan catalogue (SPEC §4). Idempotent: plans already present are left as they are.
INSERT INTO "enrollment"."insurance_plan" ("code", "name", "monthly_premium_cents", "reimbursement_rate_percent", "annual_limit_cents") VALUES
  ('basic', 'Basic', 1900, 70, 300000),
  ('plus', 'Plus', 3400, 80, 700000),
  ('premium', 'Premium', 5900, 90, 1500000)
ON CONFLICT ("code") DO NOTHING;
