/**
 * What a failed file read is reported as: the system error code (ENOENT,
 * EACCES, EISDIR, …), which says what is wrong without repeating the path the
 * caller already names; an error without a code (not from the file system) is
 * shown as its message.
 */
export function fileErrorCode(e: unknown): string {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && code !== '') return code;
  return e instanceof Error ? e.message : String(e);
}
