import { AbortError } from '@fieldhub/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHub, type TestHub } from '../../hub/test/helpers/test-hub';
import { createServiceClient, type FeedbackRecord, type ServiceClient } from '../src/index';

// service.cloudToDevice.feedback() against a real hub when the reader stops right after it accepted a batch: the
// accept and the detach (or the connection close) leave together, and the hub must complete the batch, not give it
// back.

let testHub: TestHub;
let service: ServiceClient;
let connectionString: string;

const withPort = (cs: string) => cs.replace(/HostName=([^;]+)/, `HostName=$1:${testHub.info.ports.https}`);
const clientOptions = () => ({ connectionString, ca: testHub.ca, amqpPort: testHub.info.ports.amqp ?? undefined });
/** Feedback records the hub holds, locked or not, not yet completed. */
const pending = async () => (await testHub.hub.core.cloudToDevice.depths()).feedback;

/** Sends `count` messages asking for full feedback and has the device complete them: one record each. */
async function produceFeedback(prefix: string, count: number): Promise<string[]> {
  const { cloudToDevice } = testHub.hub.core;
  const ids = Array.from({ length: count }, (_, index) => `${prefix}-${index}`);
  for (const messageId of ids) {
    await service.cloudToDevice.send('fb-reader', { body: 'x', messageId }, { ack: 'full' });
    const delivery = await cloudToDevice.receive('fb-reader');
    await cloudToDevice.complete('fb-reader', delivery?.lockToken ?? '');
  }
  return ids;
}

beforeAll(async () => {
  testHub = await startTestHub();
  connectionString = withPort(testHub.info.serviceConnectionString);
  service = createServiceClient(clientOptions());
  await service.devices.create('fb-reader');
}, 60_000);

afterAll(async () => {
  await service?.close();
  await testHub?.stop();
});

describe('cloudToDevice.feedback() stopping right after a batch', () => {
  it('completes a batch handled to its last record when the signal aborts at once', async () => {
    const ids = await produceFeedback('abort', 3);
    const controller = new AbortController();
    const seen: FeedbackRecord[] = [];
    const reading = (async () => {
      for await (const record of service.cloudToDevice.feedback({ signal: controller.signal })) {
        seen.push(record);
        if (seen.length === ids.length) controller.abort();
      }
    })();
    await expect(reading).rejects.toBeInstanceOf(AbortError);
    expect(seen.map((record) => record.originalMessageId)).toEqual(ids);
    // Asking for more after the last record accepted the batch, and the link closed with it: nothing comes back.
    await expect.poll(pending).toBe(0);
    expect(await testHub.hub.core.cloudToDevice.receiveFeedback()).toBeUndefined();
  });

  it('completes a batch handled to its last record when the client closes at once', async () => {
    const ids = await produceFeedback('close', 2);
    const client = createServiceClient(clientOptions());
    const seen: FeedbackRecord[] = [];
    let closing: Promise<void> | undefined;
    for await (const record of client.cloudToDevice.feedback()) {
      seen.push(record);
      if (seen.length === ids.length) closing = client.close();
    }
    await closing;
    expect(seen.map((record) => record.originalMessageId)).toEqual(ids);
    await expect.poll(pending).toBe(0);
    expect(await testHub.hub.core.cloudToDevice.receiveFeedback()).toBeUndefined();
  });

  it('gives back a batch left midway by a break: the next reader gets it again', async () => {
    const ids = await produceFeedback('break', 2);
    for await (const record of service.cloudToDevice.feedback()) {
      expect(record.originalMessageId).toBe(ids[0]);
      break;
    }
    const controller = new AbortController();
    const again: FeedbackRecord[] = [];
    const reading = (async () => {
      for await (const record of service.cloudToDevice.feedback({ signal: controller.signal })) {
        again.push(record);
        if (again.length === ids.length) controller.abort();
      }
    })();
    await expect(reading).rejects.toBeInstanceOf(AbortError);
    expect(again.map((record) => record.originalMessageId)).toEqual(ids);
    await expect.poll(pending).toBe(0);
  });
});
