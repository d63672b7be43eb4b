import { message as rheaMessage } from 'rhea-promise';
import { describe, expect, it } from 'vitest';
import { methodResponse, readMethodRequest } from './methods';

describe('method messages', () => {
  const uuid = Buffer.from('6793cc31d04f467bbdfd18f92a1c2473', 'hex');

  it('reads a request: uuid correlation id as its string, JSON payload, null for an empty body, text otherwise', () => {
    const request = (body: string) =>
      readMethodRequest({
        correlation_id: uuid,
        application_properties: { 'IoThub-methodname': 'reboot' },
        body: rheaMessage.data_section(Buffer.from(body)),
      });
    expect(request('{"delay":1}')).toEqual({
      request: { requestId: '6793cc31-d04f-467b-bdfd-18f92a1c2473', methodName: 'reboot', payload: { delay: 1 } },
      correlationId: uuid,
    });
    expect(request('')?.request.payload).toBeNull();
    expect(request('not json')?.request.payload).toBe('not json');
    expect(readMethodRequest({ correlation_id: 'x', body: undefined })).toBeUndefined();
  });

  it('answers with the correlation id as it came and IoThub-status typed as an AMQP int', () => {
    const response = methodResponse(uuid, 404, 'null');
    expect(response.correlation_id).toBe(uuid);
    const status = response.application_properties?.['IoThub-status'] as { type: { name: string }; value: number };
    expect([status.type.name, status.value]).toEqual(['Int', 404]);
  });
});
