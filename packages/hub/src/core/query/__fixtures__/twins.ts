/** Device twins, module twins and device job records shaped as Azure returns them (reference §2.8, §2.11, §6). */

function twin(
  deviceId: string,
  fields: {
    status?: 'enabled' | 'disabled';
    connectionState?: 'Connected' | 'Disconnected';
    lastActivityTime?: string;
    iotEdge?: boolean;
    tags?: Record<string, unknown>;
    desired?: Record<string, unknown>;
    reported?: Record<string, unknown>;
    version?: number;
  } = {},
): Record<string, unknown> {
  return {
    deviceId,
    etag: 'AAAAAAAAAAc=',
    deviceEtag: 'ODA3NDU3MjA5',
    status: fields.status ?? 'enabled',
    statusReason: null,
    statusUpdateTime: '0001-01-01T00:00:00Z',
    connectionState: fields.connectionState ?? 'Disconnected',
    lastActivityTime: fields.lastActivityTime ?? '0001-01-01T00:00:00Z',
    cloudToDeviceMessageCount: 0,
    authenticationType: 'sas',
    x509Thumbprint: { primaryThumbprint: null, secondaryThumbprint: null },
    modelId: '',
    version: fields.version ?? 2,
    capabilities: { iotEdge: fields.iotEdge ?? false },
    ...(fields.tags === undefined ? {} : { tags: fields.tags }),
    properties: {
      desired: { ...fields.desired, $metadata: { $lastUpdated: '2016-03-30T16:24:48.789Z' }, $version: 4 },
      reported: { ...fields.reported, $metadata: { $lastUpdated: '2016-04-01T16:24:48.789Z' }, $version: 7 },
    },
  };
}

const configId = 'db00ebf5-eeeb-42be-86a1-458cccb69e57';

/** Ten device twins; the first is the sample twin of Microsoft's "Queries for device and module twins" page. */
export const deviceTwins: Record<string, unknown>[] = [
  twin('myDeviceId', {
    tags: { location: { region: 'US', plant: 'Redmond43' } },
    desired: { telemetryConfig: { configId, sendFrequencyInSecs: 300 } },
    reported: {
      connectivity: { type: 'cellular' },
      telemetryConfig: { configId, sendFrequencyInSecs: 300, status: 'Success' },
    },
  }),
  twin('thermostat-1', {
    connectionState: 'Connected',
    lastActivityTime: '2026-11-20T10:00:00.000Z',
    tags: { location: { region: 'US', plant: 'Redmond43' }, floor: 1 },
    desired: { telemetryConfig: { sendFrequencyInSecs: 60 } },
    reported: {
      connectivity: { type: 'wifi' },
      telemetryConfig: { status: 'Success', sendFrequencyInSecs: 60 },
      batteryLevel: 55,
    },
  }),
  twin('thermostat-2', {
    connectionState: 'Connected',
    lastActivityTime: '2026-11-21T10:00:00.000Z',
    tags: { location: { region: 'EU', plant: 'Dublin1' }, floor: 2 },
    reported: { connectivity: { type: 'cellular' }, telemetryConfig: { status: 'Pending' }, batteryLevel: 80 },
  }),
  twin('thermostat-3', {
    status: 'disabled',
    tags: { location: { region: 'EU', plant: 'Dublin1' }, floor: 3 },
    reported: { telemetryConfig: { status: 'Success' }, batteryLevel: 20 },
  }),
  twin('gateway-1', {
    iotEdge: true,
    connectionState: 'Connected',
    tags: { location: { region: 'US' }, role: 'gateway' },
    reported: { telemetryConfig: { status: 'Error' }, batteryLevel: 100 },
  }),
  twin('sensor-null', { tags: { location: null, floor: '2' }, reported: { batteryLevel: '45' } }),
  twin('sensor-untagged', { reported: { telemetryConfig: { status: 'Pending' }, batteryLevel: 10 } }),
  twin('Sensor-Upper', {
    tags: { Location: { Region: 'US' }, floor: 2 },
    reported: { TelemetryConfig: { Status: 'Success' }, BatteryLevel: 30 },
  }),
  twin('sensor-array', { tags: { zones: ['north', 'south'], floor: 1.5 }, reported: { readings: [1, 2, 3] } }),
  twin('sensor-quote', { tags: { name: "O'Brien \"the\" sensor", floor: -1 }, version: 9 }),
];

/** Module twins: the same shape plus moduleId. */
export const moduleTwins: Record<string, unknown>[] = [
  { ...twin('gateway-1', { reported: { status: 'running' } }), moduleId: '$edgeAgent' },
  { ...twin('gateway-1', { reported: { status: 'running' } }), moduleId: '$edgeHub' },
  { ...twin('gateway-1', { tags: { kind: 'filter' }, reported: { status: 'failed' } }), moduleId: 'filter' },
  { ...twin('thermostat-1', { reported: { status: 'running' } }), moduleId: 'sensor' },
];

/** Per-device job records as `SELECT * FROM devices.jobs` returns them (reference §2.11). */
export const deviceJobs: Record<string, unknown>[] = [
  {
    deviceId: 'thermostat-1',
    jobId: 'update-1',
    jobType: 'scheduleUpdateTwin',
    status: 'completed',
    startTimeUtc: '2016-09-29T18:45:51.000Z',
    endTimeUtc: '2016-09-29T18:46:03.000Z',
    createdDateTimeUtc: '2016-09-29T18:45:50.000Z',
    lastUpdatedDateTimeUtc: '2016-09-29T18:46:03.000Z',
    outcome: { deviceMethodResponse: null },
  },
  {
    deviceId: 'thermostat-1',
    jobId: 'reboot-1',
    jobType: 'scheduleDeviceMethod',
    status: 'failed',
    startTimeUtc: '2016-10-02T18:45:51.000Z',
    endTimeUtc: '2016-10-02T18:46:03.000Z',
    createdDateTimeUtc: '2016-10-02T18:45:50.000Z',
    lastUpdatedDateTimeUtc: '2016-10-02T18:46:03.000Z',
    outcome: { deviceMethodResponse: { status: 500, payload: null } },
    error: { code: 'JobRunPreconditionFailed', description: 'The job did not run' },
  },
  {
    deviceId: 'thermostat-2',
    jobId: 'update-1',
    jobType: 'scheduleUpdateTwin',
    status: 'completed',
    startTimeUtc: '2016-09-29T18:45:51.000Z',
    endTimeUtc: '2016-09-29T18:46:03.000Z',
    createdDateTimeUtc: '2016-09-29T18:45:50.000Z',
    lastUpdatedDateTimeUtc: '2016-09-29T18:46:03.000Z',
    outcome: { deviceMethodResponse: null },
  },
];
