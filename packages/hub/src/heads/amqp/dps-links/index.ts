export { parseRegistrationAddress, type RegistrationAddress } from './addresses';
export { dpsLinkRoutes } from './dps-link-routes';
export { DpsAmqpOperations, DpsAmqpProperties, RegistrationChannel } from './registration-channel';
