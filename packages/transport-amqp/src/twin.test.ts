import { message as rheaMessage, types } from 'rhea-promise';
import { describe, expect, it } from 'vitest';
import { readTwinMessage, TwinResources, twinProperties, twinRequest } from './twin';

const data = (text: string) => rheaMessage.data_section(Buffer.from(text));
const bytes = (text: string) => new TextEncoder().encode(text);

describe('twin messages', () => {
  it('builds requests as the Node SDK: annotations, UUID-string correlation id, one-space body', () => {
    expect(twinRequest('c-1', 'GET', undefined)).toEqual({
      correlation_id: 'c-1',
      message_annotations: { operation: 'GET' },
      body: data(' '),
    });
    expect(twinRequest('c-2', 'PATCH', TwinResources.reported, '{"a":1}').message_annotations).toEqual({
      operation: 'PATCH',
      resource: '/properties/reported',
    });
  });

  it('reads a response by correlation id with int status and long version', () => {
    expect(
      readTwinMessage({
        correlation_id: 'c-2',
        message_annotations: { status: 204, version: types.wrap_long(9).value },
        body: undefined,
      }),
    ).toMatchObject({ kind: 'response', correlationId: 'c-2', status: 204, version: 9 });
  });

  it('reads a desired push without correlation id, dropping $version from the patch', () => {
    expect(readTwinMessage({ message_annotations: { version: 7 }, body: data('{"setpoint":5,"$version":7}') })).toEqual(
      {
        kind: 'desired',
        patch: { setpoint: 5 },
        version: 7,
      },
    );
    expect(readTwinMessage({ body: data('{"a":null,"$version":8}') })).toEqual({
      kind: 'desired',
      patch: { a: null },
      version: 8,
    });
    expect(readTwinMessage({ body: data('not json') })).toBeUndefined();
    expect(readTwinMessage({ body: data('{"a":1}') })).toBeUndefined();
  });

  it('reads the twin of a GET, and refuses one without versions as a ServerError', () => {
    expect(twinProperties(bytes('{"desired":{"$version":1},"reported":{"x":1,"$version":2}}'))).toEqual({
      desired: { $version: 1 },
      reported: { x: 1, $version: 2 },
    });
    expect(() => twinProperties(bytes('{"desired":{}}'))).toThrow(expect.objectContaining({ code: 'ServerError' }));
    expect(() => twinProperties(bytes('{'))).toThrow(expect.objectContaining({ code: 'ServerError' }));
  });
});
