/**
 * A statement exactly as a library sends it (`$1..$n` and the values it
 * binds), turned into pgbench script text: each placeholder becomes either a
 * SQL expression chosen by the caller (the per-transaction values: sequence
 * number, event id) or the value the library bound. Strings become pgbench
 * variables (`-D pN=value`, bound as parameters in prepared mode, as the
 * library bound them; a literal `'stream:bench:x'` would not survive pgbench,
 * which reads `:bench` inside it as a variable). Numbers, booleans and NULL
 * are written as literals.
 */

export interface CapturedStatement {
  text: string;
  values: readonly unknown[];
}

export interface PgbenchStatement {
  /** The statement, ending with `;`. */
  sql: string;
  /** Values of the pgbench variables it uses (`-D name=value`). */
  variables: Record<string, string>;
}

/**
 * `replace(value, index)` returns the SQL that takes the place of `$<index+1>`,
 * or undefined to keep the bound value. `variablePrefix` keeps the variables
 * of two statements of one script apart.
 */
export function inlineParameters(
  statement: CapturedStatement,
  replace: (value: unknown, index: number) => string | undefined,
  variablePrefix: string,
): PgbenchStatement {
  const variables: Record<string, string> = {};
  const sql = statement.text.replace(/\$(\d+)/g, (_placeholder, digits: string) => {
    const index = Number(digits) - 1;
    if (index < 0 || index >= statement.values.length) throw new Error(`statement uses $${digits} but binds ${statement.values.length} values`);
    const value = statement.values[index];
    const replaced = replace(value, index);
    if (replaced !== undefined) return `(${replaced})`;
    if (value === null || value === undefined) return 'NULL';
    if (typeof value === 'number' || typeof value === 'bigint') return String(value);
    if (typeof value === 'boolean') return value ? 'true' : 'false';
    const name = `${variablePrefix}${index + 1}`;
    variables[name] = typeof value === 'string' ? value : JSON.stringify(value);
    return `:${name}`;
  });
  return { sql: `${sql.trim().replace(/;$/, '')};`, variables };
}
