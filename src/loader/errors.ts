// Errors a user can cause: each becomes one clear line and a non-zero exit.
export class UserError extends Error {
  override name = 'UserError';
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
