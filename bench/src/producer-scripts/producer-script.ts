/** What a system gives the pgbench producer: one transaction's script and its variables. */
export interface ProducerScript {
  /** BEGIN; the event's statement(s); the domain row; COMMIT. */
  script: string;
  /** pgbench `-D` variables the script uses. */
  variables: Record<string, string>;
  /** One line for the report: what the transaction sends. */
  describe: string;
}
