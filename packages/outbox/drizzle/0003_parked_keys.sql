CREATE TABLE "events"."parked_event" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"group_name" text NOT NULL,
	"stream_name" text NOT NULL,
	"partition_key" text NOT NULL,
	"redis_entry_id" text NOT NULL,
	"event_id" uuid NOT NULL,
	"event_type" text NOT NULL,
	"outbox_id" text NOT NULL,
	"payload" text NOT NULL,
	"headers" text NOT NULL,
	"event_created_at" text NOT NULL,
	"parked_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "events"."parked_key" (
	"group_name" text NOT NULL,
	"stream_name" text NOT NULL,
	"partition_key" text NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"halted_at" timestamp with time zone,
	"last_error" text,
	"first_failed_at" timestamp with time zone,
	"parked_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "parked_key_pkey" PRIMARY KEY("group_name","stream_name","partition_key"),
	CONSTRAINT "parked_key_attempts_check" CHECK ("events"."parked_key"."attempts" >= 0)
);
--> statement-breakpoint
ALTER TABLE "events"."parked_event" ADD CONSTRAINT "parked_event_key_fkey" FOREIGN KEY ("group_name","stream_name","partition_key") REFERENCES "events"."parked_key"("group_name","stream_name","partition_key") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "parked_event_event_key" ON "events"."parked_event" USING btree ("group_name","event_id");--> statement-breakpoint
CREATE INDEX "parked_event_key_idx" ON "events"."parked_event" USING btree ("group_name","stream_name","partition_key","id");--> statement-breakpoint
CREATE INDEX "parked_key_due_idx" ON "events"."parked_key" USING btree ("group_name","stream_name","next_attempt_at") WHERE "events"."parked_key"."halted_at" IS NULL;