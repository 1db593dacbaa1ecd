CREATE TABLE "events"."redis_stream_position" (
	"redis_key" text PRIMARY KEY NOT NULL,
	"stream_name" text NOT NULL,
	"last_entry_id" text,
	"last_outbox_id" bigint,
	"trimmed_below" text,
	"fault" text,
	"fault_since" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "redis_stream_position_stream_name_check" CHECK (stream_name ~ '^stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+$')
);
--> statement-breakpoint
ALTER TABLE "events"."outbox_event" ADD COLUMN "redis_entry_id" text;