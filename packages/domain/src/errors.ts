/**
 * Typed errors of the enrollment services. The API maps each to one HTTP
 * status; commands print their message.
 */
export class DomainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The row does not exist, or belongs to another owner (indistinguishable on purpose). */
export class NotFoundError extends DomainError {
  constructor(
    readonly entity: string,
    readonly id: string,
  ) {
    super(`${entity} ${id} not found`);
  }
}

/** The plan code is not in the catalogue. */
export class UnknownPlanError extends DomainError {
  constructor(readonly planCode: string) {
    super(`unknown plan ${JSON.stringify(planCode)}; GET /v1/plans lists the catalogue`);
  }
}

/** The request is valid but the entity is not in a state that allows it. */
export class StateConflictError extends DomainError {}

/**
 * The signature provider refused or did not answer. The message is for logs
 * (it may name the provider's URL and its error text); clients get a fixed
 * one.
 */
export class SignatureProviderError extends DomainError {
  constructor(
    message: string,
    readonly providerStatus?: number,
  ) {
    super(message);
  }
}

/** The provider refused or did not answer a dispatch; confirming again retries it. */
export class SignatureDispatchError extends SignatureProviderError {}
