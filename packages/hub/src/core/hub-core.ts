import { type DpsSettings, ProvisioningService } from '../dps/provisioning-service';
import type { HubMetrics } from '../metrics';
import { CertificateAuthorities } from './certificate-authorities';
import { CloudToDevice } from './cloud-to-device';
import type { CoreContext } from './context';
import { DirectMethods } from './direct-methods';
import { HubEvents } from './events';
import { type FileUploadOptions, type FileUploadStorage, FileUploads } from './file-uploads';
import { Policies } from './policies';
import { type LifecycleSink, Registry } from './registry';
import { BuiltInEndpoint } from './telemetry';
import { Twins } from './twins';

/**
 * The hub's core services over one context. Every protocol head calls these: a feature is implemented once,
 * not once per protocol (ARCHITECTURE.md).
 */
export interface HubCore {
  readonly context: CoreContext;
  readonly metrics: HubMetrics;
  readonly policies: Policies;
  readonly registry: Registry;
  readonly twins: Twins;
  readonly telemetry: BuiltInEndpoint;
  readonly events: HubEvents;
  readonly cloudToDevice: CloudToDevice;
  readonly directMethods: DirectMethods;
  /** Uploaded CA certificates and the device chain check every head shares (X.509 CA authentication). */
  readonly certificateAuthorities: CertificateAuthorities;
  /** File upload: SAS URIs for devices, upload outcomes, and the file-upload notifications for the service. */
  readonly fileUploads: FileUploads;
  /**
   * The Device Provisioning Service (issue #10): the heads call it through its `DpsService` side (dps/contract.ts);
   * the service REST API manages its enrollments and registration states.
   */
  readonly dps: ProvisioningService;
  /** Stops timers (retention, sweeps) and live readers. The store and bus are closed by their owner. */
  stop(): Promise<void>;
}

/** What file upload needs beyond the context: where devices upload, and the `fileUpload` settings. */
export interface FileUploadSetup {
  readonly storage: FileUploadStorage;
  readonly options: FileUploadOptions;
  /** Runs on every sweep (the embedded store drops stale uncommitted blocks). */
  readonly onSweep?: (now: number) => Promise<void>;
}

/** The ID scope a core made without DPS settings answers to (tests; the hub always passes its own). */
export const defaultIdScope = '0ne00000000';

/** Composes the core services and makes sure the default policies exist. */
export async function createHubCore(
  context: CoreContext,
  metrics: HubMetrics,
  fileUpload: FileUploadSetup,
  dpsSettings: DpsSettings = { idScope: defaultIdScope, hostName: context.hostName },
): Promise<HubCore> {
  const telemetry = new BuiltInEndpoint(context);
  const events = new HubEvents(context, telemetry);
  const sink: LifecycleSink = {
    deviceLifecycle: async (op, twin, ids) => {
      await events.deviceLifecycle(op, twin, ids);
    },
    twinChanged: async (op, ids, body) => {
      await events.twinChanged(op, ids, body);
    },
  };
  // The registry reports the queue depth the cloud-to-device service owns, and the cloud-to-device service
  // checks devices in the registry: the closure breaks the construction cycle.
  let cloudToDevice: CloudToDevice | undefined;
  let fileUploads: FileUploads | undefined;
  // Cloud-to-device queues are per device (Azure has none for modules), so a module reports 0.
  const cloudToDeviceMessageCount = async (deviceId: string, moduleId: string | undefined) =>
    cloudToDevice && moduleId === undefined ? cloudToDevice.count(deviceId) : 0;
  const registry = new Registry(context, {
    events: sink,
    cloudToDeviceMessageCount,
    onDeviceDeleted: [
      async (ids) => {
        // The device is gone already: drop its queue and pending feedback (purge() would answer 404001).
        if (ids.moduleId === undefined && cloudToDevice) await cloudToDevice.forgetDevice(ids.deviceId);
      },
      async (ids) => {
        if (ids.moduleId === undefined && fileUploads) await fileUploads.forgetDevice(ids.deviceId);
      },
    ],
  });
  const twins = new Twins(context, { events: sink, cloudToDeviceMessageCount });
  cloudToDevice = new CloudToDevice(context, registry);
  const directMethods = new DirectMethods(context, registry);
  fileUploads = new FileUploads(context, registry, fileUpload.storage, fileUpload.options, fileUpload.onSweep);
  const uploads = fileUploads;
  const policies = new Policies(context);
  await policies.ensureDefaults();
  const certificateAuthorities = new CertificateAuthorities(context);
  const dps = new ProvisioningService(context, { registry, twins, certificateAuthorities }, dpsSettings);
  await dps.policies.ensureDefaults();
  const queues = cloudToDevice;
  metrics.addCollector(async () => {
    const depths = await queues.depths();
    metrics.setQueueDepth('cloudToDevice', depths.messages);
    metrics.setQueueDepth('feedback', depths.feedback);
    metrics.setQueueDepth('fileNotifications', await uploads.pendingNotifications());
  });
  // No device session survives a restart: whatever the registry still shows as Connected is stale.
  await registry.resetConnectionStates();

  return {
    context,
    metrics,
    policies,
    registry,
    twins,
    telemetry,
    events,
    cloudToDevice,
    directMethods,
    certificateAuthorities,
    fileUploads: uploads,
    dps,
    async stop() {
      await dps.stop();
      telemetry.stop();
      cloudToDevice?.stop();
      uploads.stop();
    },
  };
}
