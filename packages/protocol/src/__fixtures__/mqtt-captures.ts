/**
 * Verbatim strings from /work/shared/reference/captures (official azure-iot-device 1.18.4 and
 * azure-iot-provisioning-device 1.9.1 against local test servers). Client-sent strings are ground truth.
 */

/** CONNECT usernames (mqtt-mqtt.txt, mqtt-mqttws.txt, mqtt-x509.txt). */
export const connectUsernames = {
  mqttWithPort:
    'localhost:41883/demo-dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)',
  mqttWs:
    'localhost/demo-dev1/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)',
  x509: 'localhost:41883/demo-x509-dev/?api-version=2021-04-12&DeviceClientType=azure-iot-device%2F1.18.4%20(node%20v20.20.2%3B%20Debian%2012%3B%20x64)',
} as const;

/** The user agent the usernames above carry, decoded. */
export const nodeDeviceClientType = 'azure-iot-device/1.18.4 (node v20.20.2; Debian 12; x64)';

/** CONNECT passwords (SAS tokens) as sent. Signatures no longer verify (ids were renamed after capture). */
export const connectPasswords = {
  mqttWithPort:
    'SharedAccessSignature sr=localhost%3A41883%2Fdevices%2Fdemo-dev1&sig=DBdNlwPm0SMK08%2B9gCow34zg7K6wsN%2FUsywkv4E%2BUpg%3D&se=1795778670',
  mqttWs:
    'SharedAccessSignature sr=localhost%2Fdevices%2Fdemo-dev1&sig=2%2FJLL3QWuBo2YV2nZTCyGtx6b3h%2F3b8mWeLLvIO01KM%3D&se=1795778671',
  dps: 'SharedAccessSignature sr=0ne00000001/registrations/demo-dps-dev1&sig=TzzVNIg8fYmV76x2q5Ei2xhKicmSM1jIUPXUFnTFlio%3D&skn=registration&se=1795778661',
  service:
    'SharedAccessSignature sr=localhost&sig=he2RTtGFYguvTFo4OekNiPqw1IuIVGiJu3ynhvA57dA%3D&skn=iothubowner&se=1795778630',
  serviceAmqpWithPort:
    'SharedAccessSignature sr=localhost:41671&sig=W9zvgVutYhgF%2BJ6PEF6KerZ%2FdwfuRY1s1ySQ48%2FSPzA%3D&skn=iothubowner&se=1795778774',
} as const;

/** Connection strings from the capture headers. */
export const connectionStrings = {
  deviceWithPort: 'HostName=localhost:41883;DeviceId=demo-dev1;SharedAccessKey=yFUCl9KaR2iv+Bkb8A8hW0vuI0zZzVqFJGbPMG4x6m0=',
  device: 'HostName=localhost;DeviceId=demo-dev1;SharedAccessKey=vOR+vckh/Nh9gUAw4hG6+ygoOZ9RKXtnUFgUNm4W4TQ=',
  x509: 'HostName=localhost:41883;DeviceId=demo-x509-dev;x509=true',
  service: 'HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=8kQyLFb9JaaJJWJAvxB6i33+XH0te/Y6VF1fI59gYcM=',
} as const;

/** Topics the device published (device -> hub). */
export const deviceTopics = {
  telemetry:
    'devices/demo-dev1/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&n=1',
  telemetryX509:
    'devices/demo-x509-dev/messages/events/%24.mid=mid-1&%24.cid=cid-1&%24.ct=application%2Fjson&%24.ce=utf-8&alert=high%20temp&n=1',
  twinGet: '$iothub/twin/GET/?$rid=ab7ca61c-2ed5-46d6-bb43-710e47a2f1bc',
  twinReportedPatch: '$iothub/twin/PATCH/properties/reported/?$rid=583a9742-86b4-4f00-84f7-51a0fca07de8',
  methodResponse: '$iothub/methods/res/200/?$rid=42',
  dpsRegister: '$dps/registrations/PUT/iotdps-register/?$rid=db9be76f-2a73-46ef-8c93-4c61d3b1dea2',
  dpsGetOperationStatus:
    '$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1c5e858c-f071-46b0-9354-4509919a6b49&operationId=op-1',
} as const;

/** Topics the test hub published (hub -> device). */
export const hubTopics = {
  twinGetResponse: '$iothub/twin/res/200/?$rid=ab7ca61c-2ed5-46d6-bb43-710e47a2f1bc',
  twinPatchResponse: '$iothub/twin/res/204/?$rid=583a9742-86b4-4f00-84f7-51a0fca07de8&$version=2',
  desiredPatch: '$iothub/twin/PATCH/properties/desired/?$version=2',
  methodRequest: '$iothub/methods/POST/reboot/?$rid=42',
  cloudToDevice:
    'devices/demo-dev1/messages/devicebound/%24.mid=c2d-1&%24.cid=corr-9&%24.to=%2Fdevices%2Fdemo-dev1%2Fmessages%2Fdevicebound&%24.ct=text%2Fplain&%24.ce=utf-8&iothub-ack=full&color=blue',
  dpsAssigning: '$dps/registrations/res/202/?$rid=db9be76f-2a73-46ef-8c93-4c61d3b1dea2&retry-after=1',
  dpsAssigned: '$dps/registrations/res/200/?$rid=1c5e858c-f071-46b0-9354-4509919a6b49',
} as const;

/** Topic filters the device subscribed to. */
export const subscriptions = {
  twinResponses: '$iothub/twin/res/#',
  desiredProperties: '$iothub/twin/PATCH/properties/desired/#',
  methods: '$iothub/methods/POST/#',
  cloudToDevice: 'devices/demo-dev1/messages/devicebound/#',
  dpsResponses: '$dps/registrations/res/#',
} as const;

/** Reference examples (protocol-device.md §2.4, §2.5) that the captures do not cover. */
export const referenceTopics = {
  cloudToDeviceCamelCase:
    'devices/d1/messages/devicebound/%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound&foo=bar',
  twinPatchResponseShortRid: '$iothub/twin/res/204/?$rid=ho&$version=88',
  desiredPatch: '$iothub/twin/PATCH/properties/desired/?$version=15',
  routingHeader: 'devices/dev1/messages/events/$.ct=application%2Fjson%3Bcharset%3Dutf-8',
  nullAndEmptyValues: '/?prop1&prop2=&prop3=a%20string',
} as const;

/** DPS MQTT CONNECT username (dps.txt). */
export const dpsUsername =
  '0ne00000001/registrations/demo-dps-dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1';
