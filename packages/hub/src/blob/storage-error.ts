import { randomUUID } from 'node:crypto';

/**
 * An Azure Storage error as the embedded Blob-compatible store answers it: HTTP status, Azure Storage's error
 * code (`x-ms-error-code`, e.g. `AuthenticationFailed`, `BlobNotFound`, `RequestBodyTooLarge`) and a message.
 */
export class StorageError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'StorageError';
  }
}

/**
 * Azure Storage's XML error body: `<Error><Code>..</Code><Message>..\nRequestId:..\nTime:..</Message></Error>`
 * (`@azure/storage-blob` reads `Code` and `Message`).
 */
export function storageErrorXml(error: StorageError, requestId: string = randomUUID(), now = new Date()): string {
  const message = `${error.message}\nRequestId:${requestId}\nTime:${now.toISOString()}`;
  return `<?xml version="1.0" encoding="utf-8"?><Error><Code>${escapeXml(error.code)}</Code><Message>${escapeXml(message)}</Message></Error>`;
}

/** Escapes text for an XML element. */
export function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (character) => `&#${character.charCodeAt(0)};`);
}
