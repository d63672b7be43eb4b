import { describe, expect, it } from 'vitest';
import { parseRegistrationUsername } from '../credentials';
import { parseRegistrationAddress, sameRegistration } from './addresses';

describe('registration addresses', () => {
  it.each([
    ['the Node SDK form', '0ne00000001/registrations/dev-1'],
    ['a leading slash', '/0ne00000001/registrations/dev-1'],
    ['the C SDK form', 'amqps://dps.example.net/0ne00000001/registrations/dev-1'],
    ['a trailing slash', '0ne00000001/registrations/dev-1/'],
    ['another case', '0ne00000001/Registrations/dev-1'],
  ])('parses %s', (_name, address) => {
    expect(parseRegistrationAddress(address)).toEqual({ idScope: '0ne00000001', registrationId: 'dev-1' });
  });

  it.each([
    '0ne00000001/registrations',
    '0ne00000001/registrations/',
    '0ne00000001/registrations/dev-1/register',
    '/devices/dev-1/messages/events',
    '0ne00000001/enrollments/dev-1',
    '0ne00000001/registrations/%E0%A4%A',
    '0ne00000001/registrations/a%2Fb',
  ])('names no registration in %s', (address) => {
    expect(parseRegistrationAddress(address)).toBeUndefined();
  });

  it('compares ID scopes and registration ids without case', () => {
    expect(
      sameRegistration(
        { idScope: '0NE00000001', registrationId: 'Dev-1' },
        { idScope: '0ne00000001', registrationId: 'dev-1' },
      ),
    ).toBe(true);
    expect(
      sameRegistration(
        { idScope: '0ne00000001', registrationId: 'dev-1' },
        { idScope: '0ne00000001', registrationId: 'dev-2' },
      ),
    ).toBe(false);
  });

  it('reads a SASL PLAIN username as a registration only in its exact form', () => {
    expect(parseRegistrationUsername('0ne00000001/registrations/dev-1')).toEqual({
      idScope: '0ne00000001',
      registrationId: 'dev-1',
    });
    expect(parseRegistrationUsername('dev-1@sas.myhub')).toBeUndefined();
    expect(parseRegistrationUsername('dev-1/modules/m1@sas.myhub')).toBeUndefined();
    expect(parseRegistrationUsername('0ne00000001/registrations/dev-1@sas.myhub')).toBeUndefined();
    expect(parseRegistrationUsername('0ne00000001/registrations/')).toBeUndefined();
    expect(parseRegistrationUsername('iothubowner')).toBeUndefined();
  });
});
