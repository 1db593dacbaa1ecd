/**
 * Loadable by path: `events-consumer start --group enrollment-audit --module
 * node_modules/@petcover/domain/dist/consumer-modules/enrollment-audit.js`.
 */
import { enrollmentAuditConsumerModule } from '../handlers/register-handlers';

export const consumerModule = enrollmentAuditConsumerModule;
export default enrollmentAuditConsumerModule;
