import { randomUUID } from 'node:crypto';
import type { HubError } from '@fieldhub/protocol';

/**
 * Azure's legacy REST error body, the one the Node and C# service SDKs parse (protocol-service.md §2.2):
 * `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:...-G:0-TimeStamp:MM/dd/yyyy HH:mm:ss"}`.
 */
export function errorEnvelope(error: HubError, now = new Date()): { Message: string; ExceptionMessage: string } {
  const pad = (value: number) => String(value).padStart(2, '0');
  const stamp = `${pad(now.getUTCMonth() + 1)}/${pad(now.getUTCDate())}/${now.getUTCFullYear()} ${pad(now.getUTCHours())}:${pad(now.getUTCMinutes())}:${pad(now.getUTCSeconds())}`;
  // `;` separates the code from the text in Message: keep the text free of it so parsers split once.
  const text = error.message.replaceAll(';', ',');
  return {
    Message: `ErrorCode:${error.code};${text}`,
    ExceptionMessage: `Tracking ID:${randomUUID().replaceAll('-', '')}-G:0-TimeStamp:${stamp}`,
  };
}
