// One way to put a caught error into a log line or a reply.

/** The message of a thrown value: an Error's, else the value as text (a rejection may carry anything). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
