import { describe, expect, it } from 'vitest';
import { routePublish, routeSubscription } from './topic-authorization';

const device = { deviceId: 'd1' };
const module = { deviceId: 'd1', moduleId: 'm1' };

describe('routePublish', () => {
  it('accepts the captured telemetry topic with its property bag', () => {
    const route = routePublish(
      'devices/d1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&n=1',
      device,
    );
    expect(route).toEqual({
      kind: 'telemetry',
      systemProperties: {
        messageId: 'mid-1',
        correlationId: 'cid-1',
        contentType: 'application/json',
        contentEncoding: 'utf-8',
      },
      properties: { alert: 'high temp', n: '1' },
    });
  });

  it('accepts a module its own telemetry topic and refuses it the device topic', () => {
    expect(routePublish('devices/d1/modules/m1/messages/events/', module).kind).toBe('telemetry');
    expect(routePublish('devices/d1/messages/events/', module).kind).toBe('refused');
    expect(routePublish('devices/d1/modules/m1/messages/events/', device).kind).toBe('refused');
  });

  it("refuses another device's telemetry topic", () => {
    expect(routePublish('devices/d2/messages/events/', device)).toMatchObject({ kind: 'refused' });
  });

  it('routes twin and method topics', () => {
    expect(routePublish('$iothub/twin/GET/?$rid=1', device)).toEqual({ kind: 'twinGet', rid: '1' });
    expect(routePublish('$iothub/twin/PATCH/properties/reported/?$rid=ab', device)).toEqual({
      kind: 'twinReportedPatch',
      rid: 'ab',
    });
    expect(routePublish('$iothub/methods/res/200/?$rid=42', device)).toEqual({
      kind: 'methodResponse',
      status: 200,
      rid: '42',
    });
  });

  it('refuses hub-to-device topics, unknown topics and malformed ones', () => {
    for (const topic of [
      'devices/d1/messages/devicebound/x=1',
      '$iothub/methods/POST/reboot/?$rid=1',
      '$iothub/twin/PATCH/properties/desired/?$version=2',
      'some/topic',
      '$iothub/twin/GET/',
      'devices/d1/messages/events/%zz=1',
    ]) {
      expect(routePublish(topic, device).kind, topic).toBe('refused');
    }
  });
});

describe('routeSubscription', () => {
  it('grants the documented filters of the own identity', () => {
    expect(routeSubscription('devices/d1/messages/devicebound/#', device).kind).toBe('cloudToDevice');
    expect(routeSubscription('$iothub/twin/res/#', device).kind).toBe('twinResponses');
    expect(routeSubscription('$iothub/twin/PATCH/properties/desired/#', device).kind).toBe('desiredProperties');
    expect(routeSubscription('$iothub/methods/POST/#', module).kind).toBe('methods');
    expect(routeSubscription('devices/d1/modules/m1/inputs/#', module).kind).toBe('moduleInputs');
  });

  it("refuses another device's filters, wildcards and unknown filters", () => {
    for (const filter of ['devices/d2/messages/devicebound/#', 'devices/+/messages/devicebound/#', '#', 'a/b']) {
      expect(routeSubscription(filter, device).kind, filter).toBe('refused');
    }
    expect(routeSubscription('devices/d1/modules/m2/inputs/#', module).kind).toBe('refused');
  });

  it('answers a module asking for cloud-to-device messages with a failure, not a disconnect', () => {
    expect(routeSubscription('devices/d1/messages/devicebound/#', module).kind).toBe('failure');
  });
});
