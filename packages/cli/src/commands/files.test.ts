import type { FileUploadNotification } from '@fieldhub/service';
import { describe, expect, it } from 'vitest';
import { painter } from '../output';
import { renderNotification } from './files';

const notification: FileUploadNotification = {
  deviceId: 'cam-1',
  blobUri: 'https://localhost:8443/fieldhub-uploads/cam-1/day%201.csv',
  blobName: 'cam-1/day 1.csv',
  lastUpdatedTime: new Date('2026-11-27T10:00:00.000Z'),
  blobSizeInBytes: 1234,
  enqueuedTimeUtc: new Date('2026-11-27T10:00:01.000Z'),
  complete: async () => undefined,
  abandon: async () => undefined,
  reject: async () => undefined,
};

describe('renderNotification', () => {
  it('shows when, which device, the blob name, its size and its URL', () => {
    expect(renderNotification(notification, painter(false))).toBe(
      '2026-11-27T10:00:01.000Z cam-1 cam-1/day 1.csv 1234 bytes https://localhost:8443/fieldhub-uploads/cam-1/day%201.csv',
    );
  });

  it('colours only with a colour painter', () => {
    expect(renderNotification(notification, painter(true))).toContain('\u001b[');
  });
});
