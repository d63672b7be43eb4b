import { describe, expect, it } from 'vitest';
import { toExportImportDevice } from './devices';

describe('toExportImportDevice', () => {
  it('maps operations and etags to Azure import modes', () => {
    expect(toExportImportDevice({ operation: 'create', deviceId: 'a' })).toEqual({ id: 'a', importMode: 'create' });
    expect(toExportImportDevice({ operation: 'update', deviceId: 'a', etag: 'e' })).toMatchObject({
      importMode: 'updateIfMatchETag',
      eTag: 'e',
    });
    expect(toExportImportDevice({ operation: 'delete', deviceId: 'a' }).importMode).toBe('delete');
    expect(toExportImportDevice({ operation: 'delete', deviceId: 'a', etag: 'e' }).importMode).toBe(
      'deleteIfMatchETag',
    );
    expect(toExportImportDevice({ operation: 'updateTwin', deviceId: 'a', moduleId: 'm', twinEtag: 't' })).toEqual({
      id: 'a',
      moduleId: 'm',
      importMode: 'updateTwinIfMatchETag',
      twinETag: 't',
    });
  });
});
