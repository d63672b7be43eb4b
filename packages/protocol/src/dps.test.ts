import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fieldOfError } from './__fixtures__/argument-error';
import { assignedBody, assigningBody, registerRequestBody } from './__fixtures__/dps-captures';
import { anyString, expectLinearTime, expectOnlyArgumentError, fuzzParser } from './__fixtures__/fuzz';
import { groupKeyDerivation } from './__fixtures__/sas';
import {
  type DpsRegistrationOperation,
  deriveDeviceKey,
  parseDpsErrorBody,
  parseDpsRegistrationOperation,
  parseDpsRegistrationRequest,
  validateRegistrationId,
} from './dps';

describe('parseDpsRegistrationRequest', () => {
  it('parses the captured request body', () => {
    expect(parseDpsRegistrationRequest(registerRequestBody)).toEqual({ registrationId: 'demo-dps-dev1' });
  });

  it('keeps a payload of any JSON, a csr and TPM keys, and drops unknown fields', () => {
    expect(
      parseDpsRegistrationRequest({
        registrationId: 'r',
        payload: { modelId: 'dtmi:x;1', list: [1, null] },
        csr: 'MIIB',
        tpm: { endorsementKey: 'ZWs=', storageRootKey: 'c3Jr' },
        extra: true,
      }),
    ).toEqual({
      registrationId: 'r',
      payload: { modelId: 'dtmi:x;1', list: [1, null] },
      csr: 'MIIB',
      tpm: { endorsementKey: 'ZWs=', storageRootKey: 'c3Jr' },
    });
  });

  it.each([
    ['not json', 'body'],
    ['[]', 'body'],
    ['null', 'body'],
    ['{}', 'registrationId'],
    ['{"registrationId":""}', 'registrationId'],
    ['{"registrationId":7}', 'registrationId'],
    ['{"registrationId":"r","csr":1}', 'csr'],
    ['{"registrationId":"r","tpm":"x"}', 'tpm'],
    ['{"registrationId":"r","tpm":{}}', 'tpm.endorsementKey'],
  ])('rejects %j with an ArgumentError naming %s', (body, field) => {
    expect(fieldOfError(() => parseDpsRegistrationRequest(body))).toBe(field);
  });
});

describe('parseDpsRegistrationOperation', () => {
  it('parses the captured assigning answer', () => {
    expect(parseDpsRegistrationOperation(assigningBody)).toEqual({ operationId: 'op-1', status: 'assigning' });
  });

  it('parses the captured assigned answer with its registration state', () => {
    const expected: DpsRegistrationOperation = {
      operationId: 'op-1',
      status: 'assigned',
      registrationState: {
        registrationId: 'demo-dps-dev1',
        createdDateTimeUtc: '2026-11-27T10:24:21.237Z',
        assignedHub: 'localhost',
        deviceId: 'demo-dps-dev1',
        status: 'assigned',
        substatus: 'initialAssignment',
        lastUpdatedDateTimeUtc: '2026-11-27T10:24:21.237Z',
        etag: '"1"',
      },
    };
    expect(parseDpsRegistrationOperation(assignedBody)).toEqual(expected);
  });

  it('parses a failed registration with its error and attestation details, treating null as absent', () => {
    expect(
      parseDpsRegistrationOperation({
        operationId: 'op-2',
        status: 'Failed',
        registrationState: {
          registrationId: 'r',
          status: 'failed',
          errorCode: 400209,
          errorMessage: 'Custom allocation failed',
          deviceId: null,
          payload: { reason: 'x' },
          x509: { enrollmentGroupId: 'g', certificateInfo: { subjectName: 'CN=r' } },
          symmetricKey: { enrollmentGroupId: 'g2' },
          tpm: { authenticationKey: 'a2V5' },
          issuedCertificateChain: ['MIIC', 'MIID'],
        },
      }),
    ).toEqual({
      operationId: 'op-2',
      status: 'failed',
      registrationState: {
        registrationId: 'r',
        status: 'failed',
        errorCode: 400209,
        errorMessage: 'Custom allocation failed',
        payload: { reason: 'x' },
        x509: { enrollmentGroupId: 'g', certificateInfo: { subjectName: 'CN=r' } },
        symmetricKey: { enrollmentGroupId: 'g2' },
        tpm: { authenticationKey: 'a2V5' },
        issuedCertificateChain: ['MIIC', 'MIID'],
      },
    });
  });

  it.each([
    ['{"status":"assigning"}', 'operationId'],
    ['{"operationId":"o"}', 'status'],
    ['{"operationId":"o","status":"registering"}', 'status'],
    ['{"operationId":"o","status":"assigned","registrationState":[]}', 'registrationState'],
    ['{"operationId":"o","status":"assigned","registrationState":{"assignedHub":1}}', 'registrationState.assignedHub'],
    ['{"operationId":"o","status":"assigned","registrationState":{"status":"done"}}', 'registrationState.status'],
    ['{"operationId":"o","status":"failed","registrationState":{"errorCode":"x"}}', 'registrationState.errorCode'],
    [
      '{"operationId":"o","status":"assigned","registrationState":{"issuedCertificateChain":[1]}}',
      'registrationState.issuedCertificateChain',
    ],
    [
      '{"operationId":"o","status":"assigned","registrationState":{"x509":{"certificateInfo":"c"}}}',
      'registrationState.x509.certificateInfo',
    ],
  ])('rejects %j with an ArgumentError naming %s', (body, field) => {
    expect(fieldOfError(() => parseDpsRegistrationOperation(body))).toBe(field);
  });
});

describe('parseDpsErrorBody', () => {
  it('parses the DPS error shape', () => {
    expect(
      parseDpsErrorBody(
        '{"errorCode":401002,"trackingId":"t","message":"Unauthorized","timestampUtc":"2026-01-01T00:00:00Z"}',
      ),
    ).toEqual({ errorCode: 401002, trackingId: 't', message: 'Unauthorized', timestampUtc: '2026-01-01T00:00:00Z' });
  });

  it('rejects a body without errorCode or message', () => {
    expect(fieldOfError(() => parseDpsErrorBody('{"message":"m"}'))).toBe('errorCode');
    expect(fieldOfError(() => parseDpsErrorBody('{"errorCode":1}'))).toBe('message');
  });
});

describe('DPS parsers on random input', () => {
  it('throw nothing but ArgumentError on random strings', () => {
    fuzzParser(parseDpsRegistrationRequest);
    fuzzParser(parseDpsRegistrationOperation);
    fuzzParser(parseDpsErrorBody);
  });

  it('parse large input in linear time', () => {
    expectLinearTime(parseDpsRegistrationRequest);
    expectLinearTime(parseDpsRegistrationOperation);
  });

  it('throw nothing but ArgumentError on random JSON values', () => {
    const json = fc.jsonValue();
    const near = fc.record(
      {
        operationId: fc.oneof(fc.string(), json),
        status: fc.oneof(fc.constantFrom('assigned', 'ASSIGNING', 'x'), json),
        registrationId: fc.oneof(fc.string(), json),
        errorCode: json,
        message: json,
        registrationState: fc.oneof(
          json,
          fc.dictionary(fc.constantFrom('status', 'errorCode', 'x509', 'tpm', 'issuedCertificateChain', 'etag'), json),
        ),
        tpm: json,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(json, near, anyString), (value) => {
        expectOnlyArgumentError(() => parseDpsRegistrationRequest(value));
        expectOnlyArgumentError(() => parseDpsRegistrationOperation(value));
        expectOnlyArgumentError(() => parseDpsErrorBody(value));
      }),
      { numRuns: 1000 },
    );
  });

  it('round-trip registration requests through JSON', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1 }),
        fc.option(fc.jsonValue(), { nil: undefined }),
        (registrationId, payload) => {
          fc.pre(payload !== null);
          const request = payload === undefined ? { registrationId } : { registrationId, payload };
          expect(parseDpsRegistrationRequest(JSON.stringify(request))).toEqual(JSON.parse(JSON.stringify(request)));
        },
      ),
    );
  });
});

describe('validateRegistrationId', () => {
  it.each(['demo-dps-dev1', 'a', 'A.b_c-1', 'x'.repeat(128)])('accepts %j', (id) => {
    expect(() => validateRegistrationId(id)).not.toThrow();
  });

  it.each(['', '-a', 'a.', 'a b', 'a/b', 'x'.repeat(129), 'é'])('rejects %j', (id) => {
    expect(fieldOfError(() => validateRegistrationId(id))).toBe('registrationId');
  });
});

describe('deriveDeviceKey', () => {
  it('derives the device key from the group key as HMAC-SHA256 over the registration id', () => {
    expect(deriveDeviceKey(groupKeyDerivation.groupKey, groupKeyDerivation.registrationId)).toBe(
      groupKeyDerivation.deviceKey,
    );
  });

  it('rejects a group key that is not base64 and an empty registration id', () => {
    expect(fieldOfError(() => deriveDeviceKey('not base64!', 'r'))).toBe('groupKey');
    expect(fieldOfError(() => deriveDeviceKey('', 'r'))).toBe('groupKey');
    expect(fieldOfError(() => deriveDeviceKey(groupKeyDerivation.groupKey, ''))).toBe('registrationId');
  });
});
