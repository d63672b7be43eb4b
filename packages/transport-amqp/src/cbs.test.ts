import { describe, expect, it } from 'vitest';
import { putTokenOutcome, putTokenRequest } from './cbs';

describe('CBS put-token', () => {
  it('sends the token as a string value with the audience as name', () => {
    expect(putTokenRequest('m-1', 'SharedAccessSignature sr=a', 'a')).toEqual({
      message_id: 'm-1',
      to: '$cbs',
      reply_to: 'cbs',
      application_properties: { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: 'a' },
      body: 'SharedAccessSignature sr=a',
    });
  });

  it('takes 200 as success and anything else as the mapped error', () => {
    expect(putTokenOutcome({ body: undefined, application_properties: { 'status-code': 200 } })).toBeUndefined();
    expect(putTokenOutcome({ body: undefined, application_properties: { 'status-code': 401 } })?.name).toBe(
      'AuthenticationError',
    );
    expect(putTokenOutcome({ body: undefined })?.name).toBe('AuthenticationError');
  });
});
