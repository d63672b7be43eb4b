import { describe, expect, it } from 'vitest';
import { parseErrorEnvelope } from './error-codes';

describe('parseErrorEnvelope', () => {
  it('reads the legacy ErrorCode:<Name>;<text> form', () => {
    expect(parseErrorEnvelope('{"Message":"ErrorCode:DeviceNotFound;Device d1 not found"}')).toEqual({
      code: 'DeviceNotFound',
      text: 'Device d1 not found',
    });
  });

  it('reads a JSON message with a numeric errorCode', () => {
    const body = JSON.stringify({ Message: JSON.stringify({ errorCode: 404001, message: 'gone' }) });
    expect(parseErrorEnvelope(body)).toEqual({ code: 404001, text: 'gone' });
  });

  it('gives the text alone, or nothing, for other bodies', () => {
    expect(parseErrorEnvelope('{"Message":"plain words"}')).toEqual({ text: 'plain words' });
    expect(parseErrorEnvelope('not json')).toEqual({});
    expect(parseErrorEnvelope('{"other":1}')).toEqual({});
  });
});
