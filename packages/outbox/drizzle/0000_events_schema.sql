CREATE SCHEMA "events";
--> statement-breakpoint
CREATE TABLE "events"."dead_letter" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"group_name" text NOT NULL,
	"stream_name" text NOT NULL,
	"redis_entry_id" text NOT NULL,
	"event_id" uuid,
	"event_type" text,
	"partition_key" text,
	"payload" jsonb,
	"headers" jsonb,
	"raw_entry" jsonb,
	"error_message" text NOT NULL,
	"error_stack" text,
	"attempts" integer NOT NULL,
	"first_failed_at" timestamp with time zone NOT NULL,
	"dead_lettered_at" timestamp with time zone DEFAULT now() NOT NULL,
	"status" text DEFAULT 'dead' NOT NULL,
	"resolved_at" timestamp with time zone,
	"resolved_by" text,
	CONSTRAINT "dead_letter_status_check" CHECK ("events"."dead_letter"."status" IN ('dead', 'replayed', 'discarded')),
	CONSTRAINT "dead_letter_attempts_check" CHECK ("events"."dead_letter"."attempts" >= 1)
);
--> statement-breakpoint
CREATE TABLE "events"."outbox_event" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"event_id" uuid NOT NULL,
	"stream_name" text NOT NULL,
	"partition_key" text NOT NULL,
	"event_type" text NOT NULL,
	"payload" jsonb NOT NULL,
	"headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"published_at" timestamp with time zone,
	CONSTRAINT "outbox_event_stream_name_check" CHECK (stream_name ~ '^stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+$'),
	CONSTRAINT "outbox_event_event_type_check" CHECK (length("events"."outbox_event"."event_type") > 0),
	CONSTRAINT "outbox_event_partition_key_check" CHECK (length("events"."outbox_event"."partition_key") > 0)
);
--> statement-breakpoint
CREATE TABLE "events"."processed_event" (
	"group_name" text NOT NULL,
	"event_id" uuid NOT NULL,
	"processed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "processed_event_pkey" PRIMARY KEY("group_name","event_id")
);
--> statement-breakpoint
CREATE TABLE "events"."stream_lease" (
	"stream_name" text NOT NULL,
	"role" text NOT NULL,
	"owner_id" text NOT NULL,
	"lease_until" timestamp with time zone NOT NULL,
	"fencing_token" bigint NOT NULL,
	"acquired_at" timestamp with time zone DEFAULT now() NOT NULL,
	"renewed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "stream_lease_pkey" PRIMARY KEY("stream_name","role"),
	CONSTRAINT "stream_lease_stream_name_check" CHECK (stream_name ~ '^stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+(:p[0-9]+)?$'),
	CONSTRAINT "stream_lease_role_check" CHECK (role ~ '^(publisher|maintenance|consumer:[A-Za-z0-9_.-]+)$'),
	CONSTRAINT "stream_lease_owner_id_check" CHECK (length("events"."stream_lease"."owner_id") > 0)
);
--> statement-breakpoint
CREATE UNIQUE INDEX "dead_letter_entry_key" ON "events"."dead_letter" USING btree ("group_name","stream_name","redis_entry_id");--> statement-breakpoint
CREATE INDEX "dead_letter_group_status_idx" ON "events"."dead_letter" USING btree ("group_name","status");--> statement-breakpoint
CREATE UNIQUE INDEX "outbox_event_event_id_key" ON "events"."outbox_event" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "outbox_event_unpublished_idx" ON "events"."outbox_event" USING btree ("stream_name","id") WHERE "events"."outbox_event"."published_at" IS NULL;--> statement-breakpoint
CREATE INDEX "outbox_event_published_at_idx" ON "events"."outbox_event" USING btree ("published_at") WHERE "events"."outbox_event"."published_at" IS NOT NULL;