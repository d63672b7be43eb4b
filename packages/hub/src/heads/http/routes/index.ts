import type { FastifyInstance } from 'fastify';
import type { HubCore } from '../../../core/hub-core';
import { registerCertificateAuthorityRoutes } from './certificate-authorities';
import { registerCloudToDeviceRoutes } from './cloud-to-device';
import { registerDeviceMessageRoutes } from './device-messages';
import { registerDpsDeviceRoutes } from './dps-device';
import { registerDpsServiceRoutes } from './dps-service';
import { registerFileUploadRoutes } from './file-upload';
import { registerMethodRoutes } from './methods';
import { registerPolicyRoutes } from './policies';
import { registerQueryRoutes } from './query';
import { registerRegistryRoutes } from './registry';
import { registerTelemetryStreamRoutes } from './telemetry-stream';
import { registerTwinRoutes } from './twins';

/** Registers every REST route of the HTTPS head. */
export function registerHttpRoutes(app: FastifyInstance, core: HubCore): void {
  registerRegistryRoutes(app, core);
  registerTwinRoutes(app, core);
  registerQueryRoutes(app, core);
  registerMethodRoutes(app, core);
  registerCloudToDeviceRoutes(app, core);
  registerTelemetryStreamRoutes(app, core);
  registerPolicyRoutes(app, core);
  registerCertificateAuthorityRoutes(app, core);
  registerDeviceMessageRoutes(app, core);
  registerFileUploadRoutes(app, core);
  registerDpsServiceRoutes(app, core);
  registerDpsDeviceRoutes(app, core);
}
