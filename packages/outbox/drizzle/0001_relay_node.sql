CREATE TABLE "events"."relay_node" (
	"owner_id" text PRIMARY KEY NOT NULL,
	"role" text NOT NULL,
	"host" text NOT NULL,
	"pid" integer NOT NULL,
	"version" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_at" timestamp with time zone DEFAULT now() NOT NULL,
	"heartbeat_ttl_ms" integer NOT NULL,
	"backend_pid" integer,
	"backend_started_at" timestamp with time zone,
	CONSTRAINT "relay_node_role_check" CHECK (role ~ '^(publisher|consumer:[A-Za-z0-9_.-]+)$'),
	CONSTRAINT "relay_node_heartbeat_ttl_check" CHECK ("events"."relay_node"."heartbeat_ttl_ms" > 0)
);
