/**
 * The storage account devices upload to: the hub's embedded Blob-compatible store, or an external one (Azure
 * Storage, Azurite, another Blob-compatible store) named by a storage connection string.
 */
import { ArgumentError } from '@fieldhub/protocol';

/** A storage account as the SAS and the upload URL need it. */
export interface StorageAccount {
  readonly accountName: string;
  /** base64 */
  readonly accountKey: string;
  /** The blob service endpoint without a trailing slash, e.g. `https://acct.blob.core.windows.net`. */
  readonly blobEndpoint: string;
}

/**
 * Parses an Azure Storage connection string: `AccountName` and `AccountKey`, and either `BlobEndpoint` or
 * `DefaultEndpointsProtocol` + `EndpointSuffix` (default `core.windows.net`), from which the endpoint is
 * `{protocol}://{account}.blob.{suffix}`.
 * @throws ArgumentError when a key is missing, the endpoint is no http(s) URL, or the key is not base64.
 */
export function parseStorageConnectionString(connectionString: string): StorageAccount {
  const fields = new Map<string, string>();
  for (const part of connectionString.split(';')) {
    if (part.trim() === '') continue;
    const equals = part.indexOf('=');
    if (equals <= 0) throw invalid(`'${part}' is not Key=Value`);
    fields.set(part.slice(0, equals).trim().toLowerCase(), part.slice(equals + 1).trim());
  }
  const accountName = fields.get('accountname');
  const accountKey = fields.get('accountkey');
  if (!accountName) throw invalid('AccountName is missing');
  if (!accountKey || !/^[A-Za-z0-9+/]+={0,2}$/.test(accountKey)) throw invalid('AccountKey is missing or not base64');
  let blobEndpoint = fields.get('blobendpoint');
  if (blobEndpoint === undefined) {
    const protocol = fields.get('defaultendpointsprotocol') ?? 'https';
    const suffix = fields.get('endpointsuffix') ?? 'core.windows.net';
    blobEndpoint = `${protocol}://${accountName}.blob.${suffix}`;
  }
  let url: URL;
  try {
    url = new URL(blobEndpoint);
  } catch {
    throw invalid(`BlobEndpoint '${blobEndpoint}' is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('BlobEndpoint must be http(s)');
  return { accountName, accountKey, blobEndpoint: blobEndpoint.replace(/\/+$/, '') };
}

/** The host devices are given (`hostName` of the SAS URI answer): the endpoint's host, with its port, plus path. */
export function uploadHostName(account: StorageAccount): string {
  const url = new URL(account.blobEndpoint);
  // Devices build `https://{hostName}/{container}/{blob}`: an endpoint with a path (Azurite's
  // `http://127.0.0.1:10000/devstoreaccount1`) keeps it in front of the container.
  const path = url.pathname.replace(/\/+$/, '');
  return `${url.host}${path}`;
}

function invalid(reason: string): ArgumentError {
  return new ArgumentError(`Invalid storage connection string: ${reason}`, {
    field: 'fileUpload.storageConnectionString',
  });
}
