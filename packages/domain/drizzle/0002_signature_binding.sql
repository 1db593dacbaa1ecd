ALTER TABLE "enrollment"."approval_request" ADD COLUMN "dispatch_attempt" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "enrollment"."approval_request" ADD COLUMN "dispatch_claimed_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "enrollment"."signature_callback" DROP COLUMN "payload";--> statement-breakpoint
ALTER TABLE "enrollment"."signature_callback" ADD COLUMN "provider_request_id" text;--> statement-breakpoint
ALTER TABLE "enrollment"."signature_callback" ADD COLUMN "related_signature_id" text;