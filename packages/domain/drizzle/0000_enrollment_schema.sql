CREATE SCHEMA "enrollment";
--> statement-breakpoint
CREATE TABLE "enrollment"."approval_request" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"package_id" uuid NOT NULL,
	"provider" text NOT NULL,
	"provider_request_id" text,
	"status" text NOT NULL,
	"signer_name" text NOT NULL,
	"signer_email" text NOT NULL,
	"dispatched_at" timestamp with time zone,
	"completed_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."contract" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"package_id" uuid NOT NULL,
	"pet_id" uuid NOT NULL,
	"owner_global_user_id" uuid NOT NULL,
	"plan_code" text NOT NULL,
	"monthly_premium_cents" integer NOT NULL,
	"status" text NOT NULL,
	"starts_on" date NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."contracting_package" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"draft_id" uuid NOT NULL,
	"pet_id" uuid NOT NULL,
	"owner_global_user_id" uuid NOT NULL,
	"plan_code" text NOT NULL,
	"version" integer DEFAULT 2 NOT NULL,
	"status" text NOT NULL,
	"approved_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."dependent_draft" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"owner_global_user_id" uuid NOT NULL,
	"pet_id" uuid NOT NULL,
	"step" text NOT NULL,
	"plan_code" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."enrollment" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"pet_id" uuid NOT NULL,
	"contract_id" uuid NOT NULL,
	"owner_global_user_id" uuid NOT NULL,
	"enrolled_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."enrollment_audit_entry" (
	"event_id" uuid PRIMARY KEY NOT NULL,
	"pet_id" uuid NOT NULL,
	"contract_id" uuid NOT NULL,
	"group_name" text NOT NULL,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."insurance_plan" (
	"code" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"monthly_premium_cents" integer NOT NULL,
	"reimbursement_rate_percent" integer NOT NULL,
	"annual_limit_cents" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."package_document" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"package_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"title" text NOT NULL,
	"storage_key" text NOT NULL,
	"sha256" text NOT NULL,
	"byte_size" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."pet_profile" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"owner_global_user_id" uuid NOT NULL,
	"name" text NOT NULL,
	"species" text NOT NULL,
	"breed" text NOT NULL,
	"birth_date" date NOT NULL,
	"status" text DEFAULT 'draft' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pet_profile_species_check" CHECK ("enrollment"."pet_profile"."species" IN ('dog', 'cat')),
	CONSTRAINT "pet_profile_status_check" CHECK ("enrollment"."pet_profile"."status" IN ('draft', 'enrolled'))
);
--> statement-breakpoint
CREATE TABLE "enrollment"."signature_callback" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"dedupe_key" text NOT NULL,
	"approval_request_id" uuid NOT NULL,
	"provider" text NOT NULL,
	"event_type" text NOT NULL,
	"event_time" timestamp with time zone NOT NULL,
	"payload" jsonb NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "enrollment"."signed_document" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"document_id" uuid NOT NULL,
	"approval_request_id" uuid NOT NULL,
	"sha256" text NOT NULL,
	"signed_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "enrollment"."approval_request" ADD CONSTRAINT "approval_request_package_id_contracting_package_id_fk" FOREIGN KEY ("package_id") REFERENCES "enrollment"."contracting_package"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."contract" ADD CONSTRAINT "contract_package_id_contracting_package_id_fk" FOREIGN KEY ("package_id") REFERENCES "enrollment"."contracting_package"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."contract" ADD CONSTRAINT "contract_pet_id_pet_profile_id_fk" FOREIGN KEY ("pet_id") REFERENCES "enrollment"."pet_profile"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."contract" ADD CONSTRAINT "contract_plan_code_insurance_plan_code_fk" FOREIGN KEY ("plan_code") REFERENCES "enrollment"."insurance_plan"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."contracting_package" ADD CONSTRAINT "contracting_package_draft_id_dependent_draft_id_fk" FOREIGN KEY ("draft_id") REFERENCES "enrollment"."dependent_draft"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."contracting_package" ADD CONSTRAINT "contracting_package_pet_id_pet_profile_id_fk" FOREIGN KEY ("pet_id") REFERENCES "enrollment"."pet_profile"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."contracting_package" ADD CONSTRAINT "contracting_package_plan_code_insurance_plan_code_fk" FOREIGN KEY ("plan_code") REFERENCES "enrollment"."insurance_plan"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."dependent_draft" ADD CONSTRAINT "dependent_draft_pet_id_pet_profile_id_fk" FOREIGN KEY ("pet_id") REFERENCES "enrollment"."pet_profile"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."dependent_draft" ADD CONSTRAINT "dependent_draft_plan_code_insurance_plan_code_fk" FOREIGN KEY ("plan_code") REFERENCES "enrollment"."insurance_plan"("code") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."enrollment" ADD CONSTRAINT "enrollment_pet_id_pet_profile_id_fk" FOREIGN KEY ("pet_id") REFERENCES "enrollment"."pet_profile"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."enrollment" ADD CONSTRAINT "enrollment_contract_id_contract_id_fk" FOREIGN KEY ("contract_id") REFERENCES "enrollment"."contract"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."package_document" ADD CONSTRAINT "package_document_package_id_contracting_package_id_fk" FOREIGN KEY ("package_id") REFERENCES "enrollment"."contracting_package"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."signed_document" ADD CONSTRAINT "signed_document_document_id_package_document_id_fk" FOREIGN KEY ("document_id") REFERENCES "enrollment"."package_document"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "enrollment"."signed_document" ADD CONSTRAINT "signed_document_approval_request_id_approval_request_id_fk" FOREIGN KEY ("approval_request_id") REFERENCES "enrollment"."approval_request"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "approval_request_package_uq" ON "enrollment"."approval_request" USING btree ("package_id");--> statement-breakpoint
CREATE UNIQUE INDEX "approval_request_provider_uq" ON "enrollment"."approval_request" USING btree ("provider","provider_request_id");--> statement-breakpoint
CREATE UNIQUE INDEX "contract_package_uq" ON "enrollment"."contract" USING btree ("package_id");--> statement-breakpoint
CREATE UNIQUE INDEX "contracting_package_draft_uq" ON "enrollment"."contracting_package" USING btree ("draft_id");--> statement-breakpoint
CREATE UNIQUE INDEX "dependent_draft_pet_uq" ON "enrollment"."dependent_draft" USING btree ("pet_id");--> statement-breakpoint
CREATE INDEX "dependent_draft_owner_idx" ON "enrollment"."dependent_draft" USING btree ("owner_global_user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "enrollment_pet_uq" ON "enrollment"."enrollment" USING btree ("pet_id");--> statement-breakpoint
CREATE UNIQUE INDEX "enrollment_contract_uq" ON "enrollment"."enrollment" USING btree ("contract_id");--> statement-breakpoint
CREATE UNIQUE INDEX "package_document_kind_uq" ON "enrollment"."package_document" USING btree ("package_id","kind");--> statement-breakpoint
CREATE INDEX "pet_profile_owner_idx" ON "enrollment"."pet_profile" USING btree ("owner_global_user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "signature_callback_dedupe_uq" ON "enrollment"."signature_callback" USING btree ("dedupe_key");--> statement-breakpoint
CREATE UNIQUE INDEX "signed_document_document_uq" ON "enrollment"."signed_document" USING btree ("document_id");