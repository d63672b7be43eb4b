import { ArgumentError } from '@fieldhub/protocol';
import { describe, expect, it } from 'vitest';
import { parseStorageConnectionString, uploadHostName } from './storage-account';

describe('parseStorageConnectionString', () => {
  it('builds the blob endpoint from the account and endpoint suffix', () => {
    const account = parseStorageConnectionString(
      'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.windows.net',
    );
    expect(account).toEqual({
      accountName: 'acct',
      accountKey: 'a2V5',
      blobEndpoint: 'https://acct.blob.core.windows.net',
    });
    expect(uploadHostName(account)).toBe('acct.blob.core.windows.net');
  });

  it('takes BlobEndpoint as given, with its port and path (Azurite)', () => {
    const account = parseStorageConnectionString(
      'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;',
    );
    expect(account.blobEndpoint).toBe('http://127.0.0.1:10000/devstoreaccount1');
    expect(uploadHostName(account)).toBe('127.0.0.1:10000/devstoreaccount1');
  });

  it('refuses a string without an account name or key, or with a bad endpoint', () => {
    expect(() => parseStorageConnectionString('AccountKey=a2V5')).toThrow(ArgumentError);
    expect(() => parseStorageConnectionString('AccountName=a')).toThrow(/AccountKey/);
    expect(() => parseStorageConnectionString('AccountName=a;AccountKey=a2V5;BlobEndpoint=ftp://x')).toThrow(/http/);
  });
});
