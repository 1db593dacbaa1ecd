import { DEFAULT_DATABASE_URL } from '@petcover/service-kit';
import { defineConfig } from 'drizzle-kit';

// `pnpm --filter @petcover/domain db:generate` writes a new SQL migration to
// ./drizzle from src/schema.ts. Committed migrations are never edited.
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema.ts',
  out: './drizzle',
  schemaFilter: ['enrollment'],
  dbCredentials: { url: process.env.DATABASE_URL || DEFAULT_DATABASE_URL },
});
