// The scenario: a plain ES2020 script evaluated inside the engine after the bridge (bridge.js) and the slim bundle
// (whose exports the runner put in `globalThis.slim`). It runs the commands the test sends through the bridge and
// reports every client callback to the test as an event. It is the same script for every engine and bundle.
(() => {
  const bridge = globalThis.bridge;
  const slim = globalThis.slim;
  const describeError = bridge.describeError;
  let client = null;

  // "No Node API in reach": what the bundle could touch if it tried.
  const probe = {
    require: typeof require,
    process: typeof process,
    Buffer: typeof Buffer,
    setTimeout: typeof setTimeout,
    exports: Object.keys(slim).sort(),
    // The protocol's own pure HMAC when the bundle exports it, else the bridge's: either way it runs in the engine.
    hmac: typeof slim.hmacSha256 === 'function' ? 'bundle' : 'bridge',
  };

  function hostFor(kind) {
    const hmacSha256 = typeof slim.hmacSha256 === 'function' ? slim.hmacSha256 : bridge.hmacSha256;
    if (kind === 'bridge') {
      const h = bridge.host;
      return {
        connect: h.connect,
        setTimeout: h.setTimeout,
        clearTimeout: h.clearTimeout,
        now: h.now,
        hmacSha256,
        log: h.log,
      };
    }
    // The bundle's own adapters over the runtime-shaped sockets of shapes.js: their HMAC, timers and sockets.
    if (kind === 'ecma419') {
      const moddable = bridge.ecma419;
      return slim.createEcma419Host({
        TLSSocket: moddable.TLSSocket,
        Timer: moddable.Timer,
        Digest: moddable.Digest,
        HMAC: moddable.HMAC,
        log: bridge.host.log,
      });
    }
    if (kind === 'espruino') {
      const espruino = bridge.espruino;
      return slim.createEspruinoHost({
        net: espruino.net,
        tls: espruino.tls,
        crypto: espruino.crypto,
        hmac: espruino.hmac,
        setTimeout: espruino.setTimeout,
        clearTimeout: espruino.clearTimeout,
        log: bridge.host.log,
      });
    }
    throw new Error('scenario: unknown host ' + kind);
  }

  function errorOrNull(error) {
    return error ? describeError(error) : null;
  }

  function open(command) {
    const options = command.options;
    options.onConnect = () => bridge.emit('connect', null);
    options.onDisconnect = (error) => bridge.emit('disconnect', { error: errorOrNull(error) });
    options.onError = (error) => bridge.emit('error', { error: errorOrNull(error) });
    options.onMessage = (message) => {
      bridge.emit('message', {
        text: message.text,
        payload: bridge.base64.encode(message.payload),
        properties: message.properties,
        messageId: message.messageId === undefined ? null : message.messageId,
        correlationId: message.correlationId === undefined ? null : message.correlationId,
        contentType: message.contentType === undefined ? null : message.contentType,
        contentEncoding: message.contentEncoding === undefined ? null : message.contentEncoding,
      });
    };
    options.onDesired = (patch, version) => bridge.emit('desired', { patch, version });
    options.onMethod = (request, respond) => {
      bridge.emit('method', { name: request.name, payload: request.payload });
      respond(200, { method: request.name, echo: request.payload });
    };
    client = slim.createClient(hostFor(command.host), options);
    client.open();
  }

  const commands = {
    open,
    telemetry(command) {
      client.sendTelemetry(command.payload, command.properties, (error) => {
        bridge.emit('telemetry-sent', { error: errorOrNull(error) });
      });
    },
    getTwin() {
      client.getTwin((error, twin) => {
        bridge.emit('twin', { error: errorOrNull(error), twin: twin === undefined ? null : twin });
      });
    },
    updateReported(command) {
      client.updateReported(command.patch, (error, version) => {
        bridge.emit('reported', { error: errorOrNull(error), version: version === undefined ? null : version });
      });
    },
    close() {
      client.close(() => bridge.emit('closed', { connected: client.connected }));
    },
  };

  bridge.onCommand = (command) => {
    const run = commands[command.name];
    if (typeof run !== 'function') throw new Error('scenario: unknown command ' + command.name);
    run(command);
  };
  bridge.emit('ready', probe);
})();
