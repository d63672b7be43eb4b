/**
 * Registration states (Azure's `DeviceRegistrationState`): what DPS remembers of each registration it assigned,
 * durable in the `dps-registrations` collection (key: the registration id in lower case, as DPS compares them
 * without case), scoped by hub name. `GET|DELETE /registrations/{id}` and `POST /registrations/{groupId}/query`
 * read them; the allocation writes them.
 */
import type { DpsRegistrationState } from '@fieldhub/protocol';
import { HubError } from '@fieldhub/protocol';
import type { CoreContext } from '../core/context';
import { RevisionConflict } from '../store/store';

const collection = 'dps-registrations';

/** A stored registration state: Azure's shape plus which enrollment it came from. */
export interface StoredRegistrationState extends DpsRegistrationState {
  registrationId: string;
  deviceId: string;
  etag: string;
  createdDateTimeUtc: string;
  lastUpdatedDateTimeUtc: string;
  /** The group it registered through; absent for an individual enrollment. */
  enrollmentGroupId?: string;
  attestationType: 'symmetricKey' | 'x509';
}

/** Azure's rendering: the group id sits under the attestation's name. */
export function renderRegistrationState(state: StoredRegistrationState): DpsRegistrationState {
  const { enrollmentGroupId, attestationType, ...rest } = state;
  const details = enrollmentGroupId === undefined ? {} : { enrollmentGroupId };
  return attestationType === 'x509' ? { ...rest, x509: details } : { ...rest, symmetricKey: details };
}

/** The registration states. */
export class RegistrationStates {
  constructor(private readonly ctx: CoreContext) {}

  /** The state of a registration id (any case), or `undefined`. */
  async get(registrationId: string): Promise<StoredRegistrationState | undefined> {
    const doc = await this.ctx.store.documents.get<StoredRegistrationState>(
      this.ctx.hubName,
      collection,
      registrationId.toLowerCase(),
    );
    return doc?.value;
  }

  /** Writes a state (the allocation is serialised per registration id by its caller). */
  async put(state: StoredRegistrationState): Promise<void> {
    await this.ctx.store.documents.put(this.ctx.hubName, collection, state.registrationId.toLowerCase(), state);
  }

  /**
   * Deletes a registration state (`DELETE /registrations/{id}`); the device identity stays in the hub, as in Azure.
   * @param ifMatch `undefined` / `'*'` or the etag.
   * @throws HubError ResourceNotFound (404000), PreconditionFailed (412001).
   */
  async delete(registrationId: string, ifMatch?: string): Promise<void> {
    const key = registrationId.toLowerCase();
    for (;;) {
      const doc = await this.ctx.store.documents.get<StoredRegistrationState>(this.ctx.hubName, collection, key);
      if (!doc) throw new HubError('ResourceNotFound', `Registration '${registrationId}' does not exist`);
      if (ifMatch !== undefined && ifMatch !== '*' && ifMatch !== doc.value.etag) {
        throw new HubError('PreconditionFailed', `The etag of registration '${registrationId}' does not match`);
      }
      try {
        await this.ctx.store.documents.delete(this.ctx.hubName, collection, key, doc.revision);
        return;
      } catch (error) {
        if (!(error instanceof RevisionConflict)) throw error;
      }
    }
  }

  /** The states of one enrollment group, in registration id order, a page at a time. */
  async listGroup(
    enrollmentGroupId: string,
    top: number,
    continuation?: string,
  ): Promise<{ items: StoredRegistrationState[]; continuationToken: string | undefined }> {
    const wanted = enrollmentGroupId.toLowerCase();
    const items: StoredRegistrationState[] = [];
    let after = continuation;
    let lastKey: string | undefined;
    // Scanned in chunks: states of every group share the collection.
    for (;;) {
      const docs = await this.ctx.store.documents.list<StoredRegistrationState>(this.ctx.hubName, collection, {
        ...(after === undefined ? {} : { after }),
        limit: 500,
      });
      for (const doc of docs) {
        if (doc.value.enrollmentGroupId?.toLowerCase() !== wanted) continue;
        if (items.length === top) return { items, continuationToken: lastKey };
        items.push(doc.value);
        lastKey = doc.key;
      }
      if (docs.length < 500) return { items, continuationToken: undefined };
      after = docs[docs.length - 1]?.key;
    }
  }
}
