import { message } from 'rhea-promise';
import { describe, expect, it } from 'vitest';
import { parseFileNotification } from './file-uploads';

const azureRecord = {
  deviceId: 'mydevice',
  blobUri: 'https://account.blob.core.windows.net/container/mydevice/myfile.jpg',
  blobName: 'mydevice/myfile.jpg',
  lastUpdatedTime: '2016-06-01T21:22:41+00:00',
  blobSizeInBytes: 1234,
  enqueuedTimeUtc: '2016-06-01T21:22:43.7996883Z',
};

const section = (value: unknown) => message.data_section(Buffer.from(JSON.stringify(value), 'utf8'));

describe('parseFileNotification', () => {
  it("reads Azure's record (protocol-service.md §8) with times as Date, seven fractional digits included", () => {
    expect(parseFileNotification(section(azureRecord))).toEqual({
      deviceId: 'mydevice',
      blobUri: 'https://account.blob.core.windows.net/container/mydevice/myfile.jpg',
      blobName: 'mydevice/myfile.jpg',
      lastUpdatedTime: new Date('2016-06-01T21:22:41.000Z'),
      blobSizeInBytes: 1234,
      enqueuedTimeUtc: new Date('2016-06-01T21:22:43.799Z'),
    });
  });

  it('reads a body sent as an AMQP string value, and a record without lastUpdatedTime', () => {
    const { lastUpdatedTime: _omitted, ...rest } = azureRecord;
    expect(parseFileNotification(JSON.stringify(rest))).toMatchObject({ lastUpdatedTime: undefined });
    expect(parseFileNotification(section({ ...rest, lastUpdatedTime: null }))).toMatchObject({
      deviceId: 'mydevice',
      lastUpdatedTime: undefined,
    });
  });

  it('says why a body is not a notification', () => {
    expect(parseFileNotification(Buffer.from([0xff, 0xfe]))).toMatch(/JSON object/);
    expect(parseFileNotification(section([azureRecord]))).toMatch(/JSON object/);
    expect(parseFileNotification(section(null))).toMatch(/JSON object/);
    expect(parseFileNotification(section({ ...azureRecord, deviceId: '' }))).toMatch(/deviceId/);
    expect(parseFileNotification(section({ ...azureRecord, blobName: 7 }))).toMatch(/blobName/);
    expect(parseFileNotification(section({ ...azureRecord, blobSizeInBytes: -1 }))).toMatch(/blobSizeInBytes/);
    expect(parseFileNotification(section({ ...azureRecord, blobSizeInBytes: '12' }))).toMatch(/blobSizeInBytes/);
    expect(parseFileNotification(section({ ...azureRecord, enqueuedTimeUtc: 'yesterday' }))).toMatch(/enqueuedTimeUtc/);
    expect(parseFileNotification(section({ ...azureRecord, lastUpdatedTime: 5 }))).toMatch(/lastUpdatedTime/);
  });
});
