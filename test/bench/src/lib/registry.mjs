// Registers the benchmark devices on the hub (bulk create, 100 per request), all with the same known key.
import { createServiceClient } from '@fieldhub/service';
import { deviceKey } from './credentials.mjs';
import { eachLimited } from './each-limited.mjs';

/** Creates `ids` on the hub; ids that already exist are left as they are. */
export async function registerDevices(hub, ids) {
  const service = createServiceClient({
    connectionString: hub.serviceConnectionString,
    ca: hub.ca,
    port: hub.httpsPort,
  });
  try {
    const batches = [];
    for (let at = 0; at < ids.length; at += 100) batches.push(ids.slice(at, at + 100));
    await eachLimited(batches, 4, async (batch) => {
      const result = await service.devices.bulk(
        batch.map((deviceId) => ({
          operation: 'create',
          deviceId,
          authentication: { type: 'sas', symmetricKey: { primaryKey: deviceKey, secondaryKey: deviceKey } },
        })),
      );
      const failed = (result.errors ?? []).filter((error) => !/AlreadyExists/i.test(String(error.errorCode)));
      if (failed.length > 0) throw new Error(`bulk create failed: ${JSON.stringify(failed[0])}`);
    });
  } finally {
    await service.close();
  }
}
