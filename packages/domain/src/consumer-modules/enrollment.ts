/**
 * Loadable by path: `events-consumer start --module <this file in dist/>`.
 * Same as the app's default module.
 */
import { domainConsumerModule } from '../handlers/register-handlers';

export const consumerModule = domainConsumerModule;
export default domainConsumerModule;
