/**
 * SAS fixtures made with the algorithm of protocol-device.md §1.2 (computed independently with Python's hmac,
 * hashlib and urllib.parse.quote(safe="-_.~")), because the captured signatures no longer verify: device ids
 * were renamed after capture.
 */
export const deviceSas = {
  hostName: 'localhost:41883',
  deviceId: 'demo-dev1',
  key: 'yFUCl9KaR2iv+Bkb8A8hW0vuI0zZzVqFJGbPMG4x6m0=',
  expiry: 1795778670,
  stringToSign: 'localhost%3A41883%2Fdevices%2Fdemo-dev1\n1795778670',
  signature: 'Dfi0bwS1p88/5l2DLUyr4jf6qE+S2F/nkDfQ60vBQwY=',
  token:
    'SharedAccessSignature sr=localhost%3A41883%2Fdevices%2Fdemo-dev1&sig=Dfi0bwS1p88%2F5l2DLUyr4jf6qE%2BS2F%2FnkDfQ60vBQwY%3D&se=1795778670',
} as const;

/**
 * Group-enrollment key derivation for registration id `demo-dps-dev1` with the group key of dps.txt. The
 * capture's own "derived device key" (w7rmUUbb...) was computed for the registration id before renaming, so it
 * does not match; this value is base64(HMAC-SHA256(base64decode(groupKey), 'demo-dps-dev1')).
 */
export const groupKeyDerivation = {
  groupKey: 'YfcbMTRPED9naN4yebZq9engb1nSnMTagd5+HqeFc+L9v/HITgeBarccEQN57U1KJG97HIqKvfwN7+niF/UTbQ==',
  registrationId: 'demo-dps-dev1',
  deviceKey: '1LgrRZwgNw4r0bppcqXNXkvhK1DJA121AQtQ9ZNM1Xc=',
} as const;
