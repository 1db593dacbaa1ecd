/**
 * Readable, prefixed log lines for `petcover-dev`: pino JSON lines of the
 * children become `12:00:01 INFO  message key=value`, other lines pass as is.
 */
const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const OMITTED_KEYS = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

export function formatLogLine(line: string): string {
  if (!line.startsWith('{')) return line;
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof record.time === 'number' ? new Date(record.time).toISOString().slice(11, 19) : '';
  const level = LEVEL_NAMES[record.level as number] ?? String(record.level ?? '');
  const extras = Object.entries(record)
    .filter(([key]) => !OMITTED_KEYS.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`);
  return [time, level, String(record.msg ?? ''), ...extras].filter((part) => part !== '').join(' ');
}
